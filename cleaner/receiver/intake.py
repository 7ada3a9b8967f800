"""The `Intake` port for push events: parse, scope, dedupe, schedule.

EventBridge "ECR Image Action" events, and the registries' own notifications
(`registry_events`: distribution's envelope, Harbor's webhook). An envelope may carry
several events: each is routed and scheduled, and the delivery gets one answer, the most
that happened to any of its events (accepted, else coalesced, else duplicate, else ignored).

Every ingress edge (the HTTP `POST /events` today) hands the delivery's body here and maps
the `Answer` to its own protocol. No transport here, so each edge classifies an event the
same way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from cleaner.ports import Answer, Status
from cleaner.receiver.events import Ignored, PushEvent, Scope
from cleaner.receiver.registry_events import parse_delivery
from cleaner.receiver.routes import Route, Router
from cleaner.receiver.scheduler import Scheduler

log = logging.getLogger(__name__)


class EventIntake:
    """EventBridge "ECR Image Action" deliveries in, coalesced prunes out."""

    def __init__(
        self,
        scheduler: Scheduler,
        scope: Scope,
        covers: Callable[[str], bool] = lambda repository: True,
        router: Router | None = None,
    ) -> None:
        """One target's `scope` and `covers` (does a policy entry match a repository?), or
        the `router` of several (`cleaner.receiver.routes`)."""
        self.scheduler = scheduler
        self.router = router or Router((Route(scope, covers),))

    def submit(self, body: bytes) -> Answer:
        """Raises InvalidRequest for a malformed body, Rejected when no work can be taken."""
        answers = [self._one(event) for event in parse_delivery(body)]
        if not answers:
            return Answer(Status.IGNORED, "", reason="the delivery holds no events")
        if len(answers) == 1:
            return answers[0]
        for status in (Status.ACCEPTED, Status.COALESCED, Status.DUPLICATE):
            chosen = [a for a in answers if a.status is status]
            if chosen:
                return Answer(status, chosen[0].id, chosen[0].repository, settled=_all(answers))
        return answers[0]

    def _one(self, event: PushEvent | Ignored) -> Answer:
        if isinstance(event, Ignored):
            return Answer(Status.IGNORED, event.event_id, reason=event.reason)
        routed = self.router.route(event)
        if isinstance(routed, Ignored):
            return Answer(Status.IGNORED, event.event_id, reason=routed.reason)
        status = self.scheduler.submit_push(event.event_id, routed.key)
        if status is Status.DUPLICATE:
            return Answer(status, event.event_id)
        log.info(
            "push to %s: prune %s",
            event.repository,
            status.value,
            extra={"event_id": event.event_id, "repository": event.repository, "tag": event.tag},
        )
        settled = self.scheduler.pending(routed.key)
        return Answer(status, event.event_id, event.repository, settled=settled)


def _all(answers: Sequence[Answer]) -> asyncio.Future[bool] | None:
    """One future for the prunes a delivery rides on: True once every one of them ended
    without failures; cancelled if any is."""
    futures = list({id(a.settled): a.settled for a in answers if a.settled is not None}.values())
    if not futures:
        return None
    if len(futures) == 1:
        return futures[0]
    combined: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    def settle(_: object) -> None:
        if combined.done() or not all(f.done() for f in futures):
            return
        if any(f.cancelled() for f in futures):
            combined.cancel()
        else:
            combined.set_result(all(f.result() for f in futures))

    for future in futures:
        future.add_done_callback(settle)
    return combined
