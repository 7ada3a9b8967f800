"""Readiness checks for /readyz: is what a prune needs reachable right now?

A receiver that accepts events while its registry is unreachable answers 202 and then fails
every prune; unready, it is taken out of the Service and EventBridge keeps retrying instead
(for up to 24 hours), so nothing is lost. Each check is bounded in time and cached, so
probes and scrapes cost the registry one cheap call per `ttl_s` at most.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from cleaner.errors import CleanerError

DEFAULT_TTL_S = 15.0
DEFAULT_TIMEOUT_S = 3.0


class CachedCheck:
    """Runs `probe` at most once per `ttl_s`; its error, or a timeout, is the reason."""

    def __init__(
        self,
        name: str,
        probe: Callable[[], Awaitable[None]],
        *,
        ttl_s: float = DEFAULT_TTL_S,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name, self._probe = name, probe
        self._ttl_s, self._timeout_s, self._clock = ttl_s, timeout_s, clock
        self._checked_at = float("-inf")
        self._reason: str | None = None
        self._lock = asyncio.Lock()

    async def __call__(self) -> str | None:
        async with self._lock:  # one probe at a time; the others wait for its answer
            if self._clock() - self._checked_at >= self._ttl_s:
                self._reason = await self._run()
                self._checked_at = self._clock()
        return self._reason

    async def _run(self) -> str | None:
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._probe()
        except TimeoutError:
            return f"{self.name}: no answer within {self._timeout_s:g} s"
        except CleanerError as error:
            return f"{self.name}: {str(error)[:200]}"
        return None
