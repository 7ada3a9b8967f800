"""How often a listing source is asked: once per sweep, or in the background for a receiver.

A source that lists an AWS account (`ecs`, `lambda`, ...) costs dozens to thousands of calls
per look. The sweep looks once, on first use, and every repository shares that look
(`Once`). A receiver prunes on every push, so it keeps a snapshot refreshed in the
background and answers from it while it is younger than `max_age_s` (`Refreshing`); an older
one, or none yet, fails the prune closed, like a Kubernetes watch that is not synced.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from cleaner.errors import CleanerError, InUseError
from cleaner.planning.references import InUse

log = logging.getLogger(__name__)

REFRESH_S = 60.0
"""How often a receiver re-reads a listing source."""
MAX_AGE_S = 300.0
"""The oldest snapshot a receiver prunes with. A workload started since is caught by the
next refresh, by Kubernetes' own watch, or at delete time (the engine re-reads the in-use
set before every batch); five refreshes may fail in a row before prunes stop."""
FIRST_LOOK_TIMEOUT_S = 120.0

Look = Callable[[], Awaitable[InUse]]


class Once:
    """The sweep's view: the first `snapshot()` looks; every later one gets that answer,
    the failure included, so one run never mixes two views of the account."""

    def __init__(self, name: str, look: Look) -> None:
        self.name = name
        self._look = look
        self._lock = asyncio.Lock()
        self._result: InUse | CleanerError | None = None

    async def snapshot(self) -> InUse:
        async with self._lock:
            if self._result is None:
                try:
                    self._result = await self._look()
                    log.info("%s: %d image references in use", self.name, len(self._result))
                except CleanerError as error:
                    self._result = named(self.name, error)
        if isinstance(self._result, CleanerError):
            raise self._result
        return self._result


def named(source: str, error: CleanerError) -> InUseError:
    """The error as the run reports it: which source, then which call failed and why."""
    failed = InUseError(f"in-use source {source}: {error}", source=source)
    failed.__cause__ = error
    return failed


class Refreshing:
    """The receiver's view: refreshed every `refresh_s` in the background; `snapshot()`
    raises while the last good look is older than `max_age_s` (or there is none yet)."""

    def __init__(
        self,
        name: str,
        look: Look,
        *,
        refresh_s: float = REFRESH_S,
        max_age_s: float = MAX_AGE_S,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.name = name
        self._look = look
        self._refresh_s, self._max_age_s = refresh_s, max_age_s
        self._clock = clock
        self._good: tuple[float, InUse] | None = None
        self._error: CleanerError | None = None

    def _now(self) -> float:
        return self._clock() if self._clock else asyncio.get_running_loop().time()

    async def refresh(self) -> None:
        """One look; a failure is remembered and logged, the last good snapshot kept."""
        try:
            found = await self._look()
        except CleanerError as error:
            self._error = named(self.name, error)
            log.warning("%s: in-use refresh failed: %s", self.name, error)
            return
        self._good, self._error = (self._now(), found), None

    async def snapshot(self) -> InUse:
        if self._good is not None and self._now() - self._good[0] <= self._max_age_s:
            return self._good[1]
        why = f"; last refresh: {self._error}" if self._error else ""
        state = "older than" if self._good else "not listed yet, max age"
        raise InUseError(
            f"in-use snapshot of {self.name} {state} {self._max_age_s:g} s{why}",
            source=self.name,
        )

    async def _keep_fresh(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_s)
            await self.refresh()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Refreshing]:
        """Look once (bounded), then refresh in the background until the body ends."""
        try:
            async with asyncio.timeout(FIRST_LOOK_TIMEOUT_S):
                await self.refresh()
        except TimeoutError:
            log.error("%s: first in-use look timed out; prunes fail closed meanwhile", self.name)
        task = asyncio.create_task(self._keep_fresh(), name=f"refresh {self.name}")
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
