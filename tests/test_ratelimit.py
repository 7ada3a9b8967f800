"""The adaptive limiter, on a fake clock: unlimited until throttled, AIMD after."""

from __future__ import annotations

import pytest

from cleaner.clients.ratelimit import AdaptiveLimiter, NoLimit
from cleaner.emulator import TokenBucket


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def limiter(fake: FakeTime, **options: float) -> AdaptiveLimiter:
    return AdaptiveLimiter(clock=fake.clock, sleep=fake.sleep, **options)


async def test_unthrottled_operation_never_waits() -> None:
    fake = FakeTime()
    lim = limiter(fake)
    for _ in range(1000):
        asked = await lim.acquire("DescribeImages")
        lim.report("DescribeImages", "ok", asked)
    assert fake.slept == []
    assert lim.rate("DescribeImages") is None


async def test_first_throttle_starts_from_the_achieved_rate() -> None:
    fake = FakeTime()
    lim = limiter(fake, decrease=0.5)
    for _ in range(40):  # 40 ok answers within the last second
        lim.report("BatchDeleteImage", "ok", await lim.acquire("BatchDeleteImage"))
        fake.now += 0.02
    lim.report("BatchDeleteImage", "throttled", await lim.acquire("BatchDeleteImage"))
    assert lim.rate("BatchDeleteImage") == pytest.approx(0.5 * 40)
    assert lim.throttled() == {"BatchDeleteImage": 1}


async def test_one_cut_per_round_trip() -> None:
    fake = FakeTime()
    lim = limiter(fake, decrease=0.5)
    for _ in range(20):
        lim.report("Op", "ok", await lim.acquire("Op"))
    tickets = [await lim.acquire("Op") for _ in range(5)]  # all sent before the cut
    fake.now += 0.5
    for ticket in tickets:
        lim.report("Op", "throttled", ticket)
    first = lim.rate("Op")
    assert first is not None
    later = await lim.acquire("Op")  # asked for after the cut: its throttle cuts again
    lim.report("Op", "throttled", later)
    assert lim.rate("Op") == pytest.approx(first * 0.5)


async def test_throttled_operation_is_paced_and_others_are_not() -> None:
    fake = FakeTime()
    lim = limiter(fake)
    for _ in range(10):
        lim.report("Op", "ok", await lim.acquire("Op"))
    lim.report("Op", "throttled", await lim.acquire("Op"))
    rate = lim.rate("Op")
    assert rate is not None
    start = fake.now
    for _ in range(10):
        await lim.acquire("Op")
    assert fake.now - start == pytest.approx(10 / rate, rel=0.01)
    before = len(fake.slept)
    await lim.acquire("Other")
    assert len(fake.slept) == before


async def test_rate_climbs_back_linearly_after_a_cut() -> None:
    fake = FakeTime()
    lim = limiter(fake, decrease=0.8, recovery_s=2.0)
    for _ in range(50):
        lim.report("Op", "ok", await lim.acquire("Op"))
    lim.report("Op", "throttled", await lim.acquire("Op"))
    assert lim.rate("Op") == pytest.approx(40)
    for _ in range(20):  # two seconds of ok answers
        fake.now += 0.1
        lim.report("Op", "ok", fake.now)
    assert lim.rate("Op") == pytest.approx(50)


async def test_errors_do_not_change_the_rate() -> None:
    fake = FakeTime()
    lim = limiter(fake)
    lim.report("Op", "error", await lim.acquire("Op"))
    assert lim.rate("Op") is None


async def test_first_answer_throttled_still_probes_upward() -> None:
    fake = FakeTime()
    lim = limiter(fake, min_rate=0.5)
    lim.report("Op", "throttled", await lim.acquire("Op"))
    assert lim.rate("Op") == pytest.approx(0.5)
    for _ in range(10):
        fake.now += 1.0
        lim.report("Op", "ok", fake.now)
    rate = lim.rate("Op")
    assert rate is not None and rate > 5


async def test_converges_near_a_token_bucket_server() -> None:
    """Against a 20/s bucket, a greedy caller is served near 20/s with few throttles."""
    fake = FakeTime()
    lim = limiter(fake)
    server = TokenBucket(20.0, clock=fake.clock)
    served = throttled = 0
    while fake.now < 60.0:
        asked = await lim.acquire("Op")
        fake.now += 0.001  # a round trip would overlap calls; one at a time keeps it simple
        if server.take():
            served += 1
            lim.report("Op", "ok", asked)
        else:
            throttled += 1
            lim.report("Op", "throttled", asked)
    assert served / 60.0 > 0.9 * 20
    assert throttled < 0.1 * served


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="decrease"):
        AdaptiveLimiter(decrease=1.0)
    with pytest.raises(ValueError, match="positive"):
        AdaptiveLimiter(recovery_s=0)


async def test_no_limit_never_waits() -> None:
    lim = NoLimit()
    lim.report("Op", "throttled", await lim.acquire("Op"))
