"""Which target a push event is for: its `account` and `region` pick one.

With a single target, a repository is scheduled under its own name. With several, under
`<account>/<region>/<repository>` (`<region>/<repository>` for the AWS chain's own account,
whose id the receiver does not know), so two accounts' `api` repositories never coalesce
into one prune. `TargetsPruner` turns such keys back into each target's names; a manual
`POST /prune` may name a repository that way to reach one target, and a plain name reaches
every target.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from cleaner.planning.model import RunReport
from cleaner.receiver.events import Ignored, PushEvent, Scope
from cleaner.receiver.scheduler import Pruner


@dataclass(frozen=True, slots=True)
class Route:
    """One target the receiver serves."""

    scope: Scope
    """Its account (None: any, the AWS chain's own) and region."""
    covers: Callable[[str], bool] = lambda repository: True
    """Does one of this target's policy entries match the repository?"""
    prefix: str = ""
    """What its scheduler keys start with; "" for a lone target."""


@dataclass(frozen=True, slots=True)
class Routed:
    key: str
    """What the scheduler coalesces under."""


@dataclass(frozen=True, slots=True)
class Router:
    routes: tuple[Route, ...]
    on_unrouted: Callable[[], None] = field(default=lambda: None)
    """Hears each event for a target this receiver does not serve (a metric counts them)."""

    def route(self, event: PushEvent) -> Routed | Ignored:
        mismatches = []
        for route in self.routes:
            mismatch = route.scope.mismatch(event)
            if mismatch is None:
                if not route.covers(event.repository):
                    why = f"no policy entry matches repository {event.repository}"
                    return Ignored(event.event_id, why)
                return Routed(route.prefix + event.repository)
            mismatches.append(mismatch)
        self.on_unrouted()
        if len(self.routes) == 1:
            return Ignored(event.event_id, mismatches[0])
        why = f"account {event.account} region {event.region} is not a target of this receiver"
        return Ignored(event.event_id, why)


def prefix_of(scope: Scope) -> str:
    return "".join(f"{part}/" for part in (scope.account, scope.region) if part)


class TargetsPruner:
    """The receiver's `Pruner` over several targets: each key to its target's pruner."""

    def __init__(self, pruners: Sequence[tuple[str, Pruner]]) -> None:
        """`pruners`: (key prefix, pruner) of each target. No prefix is a prefix of another:
        an own account's starts with its region, a role's with its 12-digit account."""
        self._pruners = list(pruners)

    async def prune(self, repositories: tuple[str, ...], *, dry_run: bool) -> RunReport:
        asked = self._split(repositories)
        reports = await asyncio.gather(
            *(self._pruners[i][1].prune(names, dry_run=dry_run) for i, names in asked.items())
        )
        return RunReport.combine(dry_run, reports)

    def _split(self, keys: tuple[str, ...]) -> dict[int, tuple[str, ...]]:
        """Target index -> its names. A plain name goes to every target (one without such
        a repository says so in its entry); () means every repository of every target."""
        if not keys:
            return {i: () for i in range(len(self._pruners))}
        names: dict[int, list[str]] = {}
        for key in keys:
            found = [i for i, (p, _) in enumerate(self._pruners) if p and key.startswith(p)]
            for i in found or range(len(self._pruners)):
                prefix = self._pruners[i][0] if found else ""
                names.setdefault(i, []).append(key.removeprefix(prefix))
        return {i: tuple(dict.fromkeys(n)) for i, n in sorted(names.items())}
