"""Adaptive client-side rate control per operation (AIMD on a paced rate).

ECR publishes no rate for DescribeImages or BatchDeleteImage (its service quotas page lists
BatchGetImage and the layer calls only): the only signal is `ThrottlingException`. Retrying
alone keeps sending at the same pace, so every throttled answer wastes a round trip and a
backoff sleep in some repository's chain. Instead each operation learns its rate from the
answers:

- Until the first throttle an operation is unlimited: `acquire` costs a dict lookup, so an
  unthrottled sweep runs exactly as fast as without a limiter.
- On a throttle, the rate becomes `decrease` x the rate that was just achieved (the first
  time: the ok answers of the last `window_s`), at most once per round trip: answers to
  calls sent before the last decrease do not decrease again (TCP's one cut per RTT).
- On every ok answer the rate grows linearly in time, so that it climbs back to where it
  was cut within `recovery_s`, then keeps probing above it.

Calls are paced, not bursted: each `acquire` reserves the next free slot 1/rate after the
previous one. A server token bucket of a second's capacity (ECR's model, and the emulator's)
absorbs the small overshoot, so the sweep keeps the server's rate busy while the number of
throttled answers stays small.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

OK, THROTTLED, ERROR = "ok", "throttled", "error"
PROBE_FLOOR = 10.0
"""Calls/s the additive increase is scaled to at least (see `_grow`)."""


class Limiter(Protocol):
    """What the registry adapter calls around each attempt."""

    async def acquire(self, operation: str) -> float:
        """Wait for a slot; returns the grant time to hand back to `report`."""
        ...

    def report(self, operation: str, outcome: str, granted_at: float) -> None:
        """The attempt's outcome: ok, throttled or error."""
        ...


class NoLimit:
    """A limiter that never waits (the sequential baseline, or to compare against)."""

    async def acquire(self, operation: str) -> float:
        return 0.0

    def report(self, operation: str, outcome: str, granted_at: float) -> None:
        pass


@dataclass(slots=True)
class _Operation:
    """The learned state of one operation."""

    rate: float | None = None
    """Calls per second allowed; None until the first throttle (unlimited)."""
    next_slot: float = 0.0
    """Earliest time the next call may go."""
    last_cut: float = float("-inf")
    """When the rate was last decreased; earlier grants do not cut again."""
    peak: float = 0.0
    """The rate at the last cut: the slope of the climb back is relative to it."""
    grown_at: float = 0.0
    """When the rate last grew (the additive increase is per second elapsed)."""
    recent_ok: deque[float] = field(default_factory=deque)
    """Times of ok answers within the window, while unlimited."""
    throttled: int = 0


class AdaptiveLimiter:
    """Per-operation AIMD pacing; see the module docstring. Clock and sleep are injectable."""

    def __init__(
        self,
        *,
        decrease: float = 0.85,
        recovery_s: float = 2.0,
        min_rate: float = 0.5,
        window_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not 0.0 < decrease < 1.0:
            raise ValueError(f"decrease must be within (0, 1), got {decrease}")
        if recovery_s <= 0 or min_rate <= 0 or window_s <= 0:
            raise ValueError("recovery_s, min_rate and window_s must be positive")
        self.decrease = decrease
        self.recovery_s = recovery_s
        self.min_rate = min_rate
        self.window_s = window_s
        self._clock = clock
        self._sleep = sleep
        self._ops: dict[str, _Operation] = {}

    def rate(self, operation: str) -> float | None:
        """The operation's current rate; None while it has never been throttled."""
        state = self._ops.get(operation)
        return state.rate if state else None

    def throttled(self) -> dict[str, int]:
        """Throttled answers seen, by operation."""
        return {op: s.throttled for op, s in self._ops.items() if s.throttled}

    async def acquire(self, operation: str) -> float:
        """Wait for the operation's next slot. Returns when the slot was asked for: a call
        asked for before a cut was paced at the old rate, so its throttle does not cut again.
        """
        state = self._state(operation)
        now = self._clock()
        if state.rate is None:
            return now
        slot = max(now, state.next_slot)
        state.next_slot = slot + 1.0 / state.rate
        if slot > now:
            await self._sleep(slot - now)
        return now

    def report(self, operation: str, outcome: str, granted_at: float) -> None:
        state = self._state(operation)
        now = self._clock()
        if outcome == OK:
            self._grow(state, now)
        elif outcome == THROTTLED:
            state.throttled += 1
            if granted_at >= state.last_cut:
                self._cut(state, now)
        # Other errors (5xx, dropped connections) say nothing about the rate.

    def _state(self, operation: str) -> _Operation:
        state = self._ops.get(operation)
        if state is None:
            state = self._ops[operation] = _Operation()
        return state

    def _grow(self, state: _Operation, now: float) -> None:
        if state.rate is None:
            state.recent_ok.append(now)
            while state.recent_ok and state.recent_ok[0] < now - self.window_s:
                state.recent_ok.popleft()
            return
        # Capped at one second per answer: an idle operation must not bank a large rate.
        elapsed = min(1.0, max(0.0, now - state.grown_at))
        # A floor on the slope, so that a rate cut very low (the very first answer throttled,
        # nothing achieved yet) still climbs at a useful pace.
        slope = (1.0 - self.decrease) * max(state.peak, PROBE_FLOOR) / self.recovery_s
        state.rate += slope * elapsed
        state.grown_at = now

    def _cut(self, state: _Operation, now: float) -> None:
        if state.rate is None:  # the first throttle: start from what was achieved
            achieved = len(state.recent_ok) / self.window_s
            state.recent_ok.clear()
            current = max(achieved, self.min_rate)
        else:
            current = state.rate
        state.peak = current
        state.rate = max(self.min_rate, current * self.decrease)
        state.last_cut = state.grown_at = now
        # Calls already reserved at the old pace keep their slots; new ones space out.
        state.next_slot = max(state.next_slot, now + 1.0 / state.rate)
