"""Retry with capped, fully jittered exponential backoff.

botocore has retries of its own, but its "standard" and "adaptive" modes share a retry quota
that a long sweep drains under sustained throttling (each throttled attempt costs 5 units, a
success refunds 1): after a few hundred throttles it stops retrying and the sweep fails. A
cleaner that runs near the registry's rate limit on purpose needs retries that never run dry,
so the registry adapter turns botocore's off and uses this loop instead.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Backoff:
    """How hard to retry a call that failed transiently."""

    attempts: int = 10
    """Total tries, the first included."""
    base_s: float = 0.05
    """First delay ceiling; each retry doubles it (full jitter: sleep uniform(0, ceiling))."""
    cap_s: float = 5.0
    """Largest delay ceiling, so a throttled sweep keeps probing instead of stalling."""

    def delay(self, attempt: int, rng: random.Random) -> float:
        ceiling = min(self.cap_s, self.base_s * (2**attempt))
        return rng.uniform(0, ceiling)


async def retrying(
    call: Callable[[], Awaitable[T]],
    *,
    retryable: Callable[[BaseException], bool],
    backoff: Backoff,
    what: str,
    rng: random.Random | None = None,
) -> T:
    """Await `call()`, retrying while `retryable(error)` holds and attempts remain."""
    rng = rng or random.Random()  # noqa: S311 - jitter, not security
    for attempt in range(backoff.attempts):
        try:
            return await call()
        except Exception as error:
            if not retryable(error) or attempt + 1 >= backoff.attempts:
                raise
            delay = backoff.delay(attempt, rng)
            log.debug("%s: transient %s, retry %d in %.3fs", what, error, attempt + 1, delay)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable: the loop returns or raises")
