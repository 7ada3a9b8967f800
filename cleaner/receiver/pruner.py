"""The engine behind the receiver's `Pruner` port: the same `engine.run` that `sweep` runs."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from cleaner.engine import Engine, SweepRequest
from cleaner.engine.core import DEFAULT_CONCURRENCY
from cleaner.planning.model import RunReport
from cleaner.planning.policy_file import PolicyFile


def _utcnow() -> datetime:
    return datetime.now(UTC)


class EnginePruner:
    """Prunes through the shared `Engine`; each call reads the clock once, as `sweep` does.

    One engine for the life of the server, so its manifest cache, in-use watcher and Lease
    coordinator serve every prune.
    """

    def __init__(
        self,
        engine: Engine,
        policy: PolicyFile,
        concurrency: int = DEFAULT_CONCURRENCY,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._engine = engine
        self._policy = policy
        self._concurrency = concurrency
        self._clock = clock

    async def prune(self, repositories: tuple[str, ...], *, dry_run: bool) -> RunReport:
        request = SweepRequest(
            policy=self._policy,
            now=self._clock(),
            repositories=repositories,
            apply=not dry_run,
            concurrency=self._concurrency,
        )
        return await self._engine.run(request)
