"""The coalescing scheduler with a fake pruner: bursts, debounce, limits, dedupe, shutdown."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import pytest

from cleaner.errors import BacklogFull, ShuttingDown
from cleaner.ports import Status
from cleaner.receiver.scheduler import (
    Job,
    JobState,
    RecentIds,
    Scheduler,
    SchedulerSettings,
)
from tests.support.fakes import FakePruner, settle, until


def settings(**overrides: float) -> SchedulerSettings:
    base = {"debounce_s": 0.05, "max_prunes": 4, "retry_after_s": 7, "retry_base_s": 0.05}
    return SchedulerSettings(**(base | overrides))  # type: ignore[arg-type]


@pytest.fixture
def pruner() -> FakePruner:
    return FakePruner()


@pytest.fixture
async def scheduler(pruner: FakePruner) -> AsyncIterator[Scheduler]:
    scheduler = Scheduler(pruner, settings())
    yield scheduler
    await scheduler.close(5)


async def test_a_burst_to_one_repository_is_one_prune(
    scheduler: Scheduler, pruner: FakePruner
) -> None:
    outcomes = [scheduler.submit_push(f"id-{i}", "app") for i in range(5)]
    assert outcomes == [Status.ACCEPTED] + [Status.COALESCED] * 4
    assert scheduler.depth == 1
    await settle(scheduler)
    assert [(names, dry_run) for names, dry_run, _ in pruner.calls] == [(("app",), False)]


async def test_the_prune_waits_for_the_debounce(pruner: FakePruner) -> None:
    scheduler = Scheduler(pruner, settings(debounce_s=0.2))
    start = asyncio.get_running_loop().time()
    scheduler.submit_push("a", "app")
    await settle(scheduler)
    await scheduler.close(1)
    assert pruner.calls[0][2] - start >= 0.19


async def test_pushes_during_a_prune_queue_exactly_one_more(
    scheduler: Scheduler, pruner: FakePruner
) -> None:
    pruner.gate = asyncio.Event()
    scheduler.submit_push("first", "app")
    await until(lambda: pruner.calls)
    outcomes = [scheduler.submit_push(f"late-{i}", "app") for i in range(4)]
    assert outcomes == [Status.ACCEPTED] + [Status.COALESCED] * 3
    assert (scheduler.depth, scheduler.running) == (1, 1)
    pruner.gate.set()
    await settle(scheduler)
    assert pruner.per_repository() == {"app": 2}


async def test_repositories_are_pruned_concurrently_within_the_global_limit(
    pruner: FakePruner,
) -> None:
    pruner.delay = 0.05
    scheduler = Scheduler(pruner, settings(max_prunes=3))
    for i in range(10):
        scheduler.submit_push(f"id-{i}", f"repo-{i}")
    await settle(scheduler)
    await scheduler.close(1)
    assert pruner.max_running == 3
    assert pruner.per_repository() == {f"repo-{i}": 1 for i in range(10)}


async def test_an_event_id_seen_before_is_a_duplicate(
    scheduler: Scheduler, pruner: FakePruner
) -> None:
    assert scheduler.submit_push("same", "app") is Status.ACCEPTED
    await settle(scheduler)
    assert scheduler.submit_push("same", "app") is Status.DUPLICATE
    assert scheduler.depth == 0
    await settle(scheduler)
    assert len(pruner.calls) == 1


async def test_an_event_whose_prune_failed_is_new_work_when_it_comes_back(
    pruner: FakePruner,
) -> None:
    """A queue redelivers a message whose prune failed: that must prune, not be "seen"."""
    scheduler = Scheduler(pruner, settings(retries=0))
    pruner.fail = True
    assert scheduler.submit_push("failed", "app") is Status.ACCEPTED
    assert scheduler.submit_push("rode-on-it", "app") is Status.COALESCED
    await settle(scheduler)
    pruner.fail = False
    assert scheduler.submit_push("failed", "app") is Status.ACCEPTED
    assert scheduler.submit_push("rode-on-it", "app") is Status.COALESCED
    await settle(scheduler)
    assert pruner.finished == [("app",)]
    assert scheduler.submit_push("failed", "app") is Status.DUPLICATE  # done now
    await scheduler.close(5)


def test_recent_ids_forget_after_the_window_and_beyond_the_size() -> None:
    now = [0.0]
    ids = RecentIds(window_s=10, max_size=3, clock=lambda: now[0])
    ids.add("a")
    now[0] = 5
    ids.add("b")
    assert "a" in ids and "b" in ids
    now[0] = 10.5
    assert "a" not in ids and "b" in ids
    for key in "cde":
        ids.add(key)
    assert len(ids) == 3 and "b" not in ids
    assert all(key in ids for key in "cde")


async def test_a_full_backlog_refuses_new_repositories_but_not_coalescing_pushes(
    pruner: FakePruner,
) -> None:
    pruner.gate = asyncio.Event()
    scheduler = Scheduler(pruner, settings(max_backlog=2, debounce_s=10))
    scheduler.submit_push("1", "one")
    scheduler.submit_push("2", "two")
    with pytest.raises(BacklogFull) as refused:
        scheduler.submit_push("3", "three")
    assert refused.value.retry_after == 7
    with pytest.raises(BacklogFull):
        scheduler.submit_job((), dry_run=True)
    assert scheduler.submit_push("4", "one") is Status.COALESCED
    pruner.gate.set()
    await scheduler.close(2)  # drains the two pending prunes at once
    assert sorted(pruner.finished) == [("one",), ("two",)]


async def test_a_refused_event_is_not_remembered_so_its_retry_is_accepted(
    pruner: FakePruner,
) -> None:
    scheduler = Scheduler(pruner, settings(max_backlog=1))
    scheduler.submit_push("1", "one")
    with pytest.raises(BacklogFull):
        scheduler.submit_push("retried", "two")
    await settle(scheduler)
    assert scheduler.submit_push("retried", "two") is Status.ACCEPTED
    await settle(scheduler)
    await scheduler.close(1)
    assert pruner.per_repository() == {"one": 1, "two": 1}


async def test_a_failing_prune_does_not_stop_the_repository_worker(
    scheduler: Scheduler, pruner: FakePruner, caplog: pytest.LogCaptureFixture
) -> None:
    pruner.fail = True
    scheduler.submit_push("1", "app")
    await settle(scheduler)
    assert "prune of app failed" in caplog.text
    pruner.fail = False
    scheduler.submit_push("2", "app")
    await settle(scheduler)
    assert pruner.finished == [("app",)]


async def test_a_failed_prune_is_retried_with_backoff_a_bounded_number_of_times(
    pruner: FakePruner,
) -> None:
    retried: list[str] = []
    scheduler = Scheduler(pruner, settings(retries=2), on_retry=retried.append)
    pruner.fail = True
    scheduler.submit_push("1", "app")
    await settle(scheduler)
    starts = [at for _, _, at in pruner.calls]
    assert len(starts) == 3 and retried == ["app", "app"]  # the first try and two retries
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert gaps[0] >= 0.05 and gaps[1] >= 0.1  # the backoff doubles
    await scheduler.close(5)


async def test_a_retry_that_succeeds_settles_the_push_and_stops_retrying(
    pruner: FakePruner,
) -> None:
    scheduler = Scheduler(pruner, settings())
    pruner.fail = True
    scheduler.submit_push("1", "app")
    first = scheduler.pending("app")
    assert first is not None
    assert await asyncio.wait_for(first, 5) is False  # the first prune failed
    pruner.fail = False
    await settle(scheduler)
    assert pruner.finished == [("app",)] and len(pruner.calls) == 2
    scheduler.submit_push("2", "app")
    second = scheduler.pending("app")
    assert second is not None and await asyncio.wait_for(second, 5) is True
    await scheduler.close(5)


async def test_a_job_runs_and_keeps_its_report(scheduler: Scheduler, pruner: FakePruner) -> None:
    job = scheduler.submit_job(("a", "b"), dry_run=True)
    assert job.state == "queued" and scheduler.job(job.id) is job
    await job.wait()
    assert job.state == "done" and job.report is not None
    assert [r.repository for r in job.report.repositories] == ["a", "b"]
    assert job.started_at and job.finished_at and job.finished_at >= job.started_at
    assert pruner.calls[0][:2] == (("a", "b"), True)
    assert scheduler.job("unknown") is None


async def test_a_failing_job_says_why(scheduler: Scheduler, pruner: FakePruner) -> None:
    pruner.fail = True
    job = scheduler.submit_job((), dry_run=False)
    await job.wait()
    assert job.state is JobState.ERROR and job.report is None
    assert job.error == "DescribeRepositories: boom"


async def test_jobs_and_pushes_share_the_global_limit(pruner: FakePruner) -> None:
    pruner.gate = asyncio.Event()
    scheduler = Scheduler(pruner, settings(max_prunes=1, debounce_s=0))
    scheduler.submit_push("1", "app")
    await until(lambda: pruner.calls)
    job = scheduler.submit_job(("other",), dry_run=False)
    await asyncio.sleep(0.05)
    assert job.state is JobState.QUEUED and scheduler.depth == 1
    pruner.gate.set()
    await job.wait()
    await scheduler.close(1)
    assert pruner.max_running == 1


async def four_finished_jobs_and_one_more(scheduler: Scheduler) -> list[Job]:
    """Four jobs run to the end one by one; a fifth submission forgets what is beyond the
    limits, then the scheduler closes."""
    jobs = []
    for _ in range(4):
        jobs.append(scheduler.submit_job((), dry_run=True))
        await jobs[-1].wait()
    scheduler.submit_job((), dry_run=True)
    await scheduler.close(1)
    return jobs


async def test_only_the_newest_finished_jobs_are_kept(pruner: FakePruner) -> None:
    scheduler = Scheduler(pruner, settings(jobs_kept=2))
    jobs = await four_finished_jobs_and_one_more(scheduler)
    assert [scheduler.job(j.id) is not None for j in jobs] == [False, False, True, True]


async def test_only_the_newest_finished_jobs_keep_their_reports(pruner: FakePruner) -> None:
    scheduler = Scheduler(pruner, settings(jobs_kept=10, reports_kept=2))
    jobs = await four_finished_jobs_and_one_more(scheduler)
    assert all(scheduler.job(j.id) is j and j.state is JobState.DONE for j in jobs)
    assert [j.report is not None for j in jobs] == [False, False, True, True]


async def test_close_cuts_debounces_short_and_drains_what_was_accepted(
    pruner: FakePruner,
) -> None:
    scheduler = Scheduler(pruner, settings(debounce_s=60))
    scheduler.submit_push("1", "a")
    scheduler.submit_push("2", "b")
    start = asyncio.get_running_loop().time()
    await scheduler.close(5)
    assert asyncio.get_running_loop().time() - start < 1
    assert sorted(pruner.finished) == [("a",), ("b",)]


async def test_close_refuses_new_work_and_lets_running_prunes_finish(
    pruner: FakePruner,
) -> None:
    pruner.gate = asyncio.Event()
    scheduler = Scheduler(pruner, settings(debounce_s=0))
    scheduler.submit_push("1", "app")
    await until(lambda: pruner.calls)
    scheduler.submit_push("2", "app")  # pending behind the running prune
    closing = asyncio.create_task(scheduler.close(5))
    await asyncio.sleep(0.05)
    assert not closing.done()
    with pytest.raises(ShuttingDown) as refused:
        scheduler.submit_push("3", "app")
    assert refused.value.retry_after == 7
    with pytest.raises(ShuttingDown):
        scheduler.submit_job((), dry_run=False)
    assert scheduler.submit_push("2", "app") is Status.DUPLICATE  # still answerable
    pruner.gate.set()
    await closing
    assert pruner.finished == [("app",), ("app",)]
    await scheduler.close(5)  # idempotent


async def test_close_cancels_what_overruns_the_grace_period(
    pruner: FakePruner, caplog: pytest.LogCaptureFixture
) -> None:
    pruner.gate = asyncio.Event()  # never opened
    scheduler = Scheduler(pruner, settings(debounce_s=0))
    scheduler.submit_push("1", "stuck")
    job = scheduler.submit_job(("also-stuck",), dry_run=False)
    await asyncio.sleep(0.02)
    start = asyncio.get_running_loop().time()
    await scheduler.close(0.1)
    assert asyncio.get_running_loop().time() - start < 1
    assert job.state is JobState.CANCELLED and job.finished
    assert scheduler.depth == scheduler.running == 0
    assert "cancelling 2 prunes" in caplog.text


async def test_close_with_no_grace_still_lets_fresh_work_start_and_end(
    pruner: FakePruner,
) -> None:
    pruner.gate = asyncio.Event()  # never opened
    scheduler = Scheduler(pruner, settings(debounce_s=0))
    job = scheduler.submit_job((), dry_run=False)
    scheduler.submit_push("1", "app")
    await scheduler.close(0)
    assert job.finished and job.state is JobState.CANCELLED
    assert (scheduler.depth, scheduler.running) == (0, 0)
