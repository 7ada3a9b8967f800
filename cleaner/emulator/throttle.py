"""Per-operation token buckets, so the emulator can throttle like ECR does under load.

ECR publishes no TPS for DescribeImages, ListImages or BatchDeleteImage (its service quotas
page lists BatchGetImage and the layer calls only), so rates are whatever a test or
benchmark configures; nothing is limited by default.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

WILDCARD = "*"
"""Key for a rate applied to every operation without its own entry (one bucket each)."""


class TokenBucket:
    """`rate` tokens per second, holding at most max(1, rate) so one call always fits."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError(f"throttle rate must be positive, got {rate}")
        self.rate = rate
        self.capacity = max(1.0, rate)
        self._clock = clock
        self._tokens = self.capacity
        self._updated = clock()

    def take(self) -> bool:
        now = self._clock()
        elapsed = max(0.0, now - self._updated)
        self._tokens = min(self.capacity, self._tokens + elapsed * self.rate)
        self._updated = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class Throttle:
    """Decides per call whether an operation is over its configured rate."""

    def __init__(
        self,
        rates: Mapping[str, float] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rates = dict(rates or {})
        self._clock = clock
        self._buckets = {op: TokenBucket(r, clock) for op, r in self._rates.items()}

    def allow(self, operation: str) -> bool:
        bucket = self._buckets.get(operation)
        if bucket is None:
            rate = self._rates.get(WILDCARD)
            if rate is None:
                return True
            bucket = self._buckets[operation] = TokenBucket(rate, self._clock)
        return bucket.take()
