"""The `Intake` port for EventBridge events: parse, scope, dedupe, schedule.

Every ingress edge (the HTTP `POST /events` today) hands the delivery's body here and maps
the `Answer` to its own protocol. No transport here, so each edge classifies an event the
same way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from cleaner.ports import Answer, Status
from cleaner.receiver.events import Ignored, Scope, parse_event
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
        event = parse_event(body)
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
