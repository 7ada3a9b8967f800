"""Coalescing scheduler: turns a burst of pushes into at most two prunes per repository.

CI pushes several tags and platforms at once, and EventBridge delivers at least once. Per
repository there is at most one prune running and one pending; a push for a repository that
already has a pending prune merges into it. A pending prune waits out a short debounce (so
the rest of the burst lands first), then a slot of the global limit, which manual jobs share.
Only a new pending repository or job takes backlog room; when the backlog is full the caller
answers 429 so EventBridge retries later instead of losing the event.

An event id is a duplicate while the prune it asked for is pending, running or done without
failures. When that prune fails, the ids that rode on it are forgotten, so a redelivery (a
queue message coming back after its visibility timeout) asks for a prune again instead of
being dropped as seen.

Every task is tracked: `close` stops intake, lets running work finish within a bound and
cancels the rest. No transport here; each edge maps `Rejected` to its protocol (HTTP 429/503).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from cleaner.errors import BacklogFull, ShuttingDown
from cleaner.planning.model import RunReport
from cleaner.ports import Status

log = logging.getLogger(__name__)


class Pruner(Protocol):
    """The one thing the receiver needs from the engine."""

    async def prune(self, repositories: tuple[str, ...], *, dry_run: bool) -> RunReport:
        """Prune these repositories (() means every repository) and report."""
        ...


@dataclass(frozen=True, slots=True)
class SchedulerSettings:
    debounce_s: float = 1.0
    """How long a pending prune waits for the rest of a burst before it may start."""
    max_prunes: int = 4
    """Prunes and manual jobs running at once, across all repositories."""
    max_backlog: int = 1000
    """Pending repositories plus queued jobs; beyond this, new work is refused (429)."""
    dedupe_window_s: float = 600.0
    """An event id seen this recently is a redelivery (EventBridge is at-least-once)."""
    dedupe_max: int = 100_000
    """Most event ids remembered; the oldest are forgotten first."""
    retry_after_s: int = 30
    """What a refused caller is told to wait, in seconds (HTTP Retry-After)."""
    jobs_kept: int = 1000
    """Finished manual jobs kept for GET /jobs/{id}; the oldest are forgotten first."""
    reports_kept: int = 20
    """Finished jobs that keep their whole report; older ones keep their state, times and
    error, and answer `report: null`. A job over every repository holds the registry's
    every decision, and a thousand of those would be the registry a thousand times."""
    retries: int = 3
    """A push-triggered prune that fails (the registry down, a cluster unreadable) is tried
    again this many times before the scheduled sweep is left to catch up."""
    retry_base_s: float = 5.0
    """The first retry waits this long; each next one twice as long (5, 10, 20 s)."""


class RecentIds:
    """Event ids seen within a time window, at most `max_size` of them. Clock injected."""

    def __init__(
        self, window_s: float, max_size: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._window_s = window_s
        self._max_size = max(1, max_size)
        self._clock = clock
        self._seen: OrderedDict[str, float] = OrderedDict()

    def __contains__(self, key: str) -> bool:
        self._expire()
        return key in self._seen

    def __len__(self) -> int:
        self._expire()
        return len(self._seen)

    def discard(self, key: str) -> None:
        self._seen.pop(key, None)

    def add(self, key: str) -> None:
        self._seen[key] = self._clock()
        self._seen.move_to_end(key)
        while len(self._seen) > self._max_size:
            self._seen.popitem(last=False)

    def _expire(self) -> None:
        horizon = self._clock() - self._window_s
        while self._seen and next(iter(self._seen.values())) <= horizon:
            self._seen.popitem(last=False)


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    """Finished with a report (which may still list repository failures)."""
    ERROR = "error"
    """The prune raised; `error` says why."""
    CANCELLED = "cancelled"
    """Still unfinished when the server shut down."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(eq=False, slots=True)
class Job:
    """A manual prune, readable while it runs and for a while after."""

    repositories: tuple[str, ...]
    dry_run: bool
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    state: JobState = JobState.QUEUED
    submitted_at: datetime = field(default_factory=_utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    report: RunReport | None = None
    error: str | None = None
    _finished: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    @property
    def finished(self) -> bool:
        return self._finished.is_set()

    async def wait(self) -> None:
        await self._finished.wait()

    def end(self, state: JobState) -> None:
        self.state = state
        self.finished_at = _utcnow()
        self._finished.set()


class Scheduler:
    def __init__(
        self,
        pruner: Pruner,
        settings: SchedulerSettings | None = None,
        *,
        on_retry: Callable[[str], None] = lambda repository: None,
    ) -> None:
        self._pruner = pruner
        self.settings = settings or SchedulerSettings()
        self._on_retry = on_retry
        self._failures: dict[str, int] = {}
        """repository -> failed prunes in a row, while it has any."""
        self._slots = asyncio.Semaphore(max(1, self.settings.max_prunes))
        self._pending: dict[str, float] = {}
        """repository -> loop time its debounce ends; present until its prune starts."""
        self._settled: dict[str, asyncio.Future[bool]] = {}
        """repository -> how its pending prune ends (True: without failures)."""
        self._riders: dict[str, list[str]] = {}
        """repository -> ids of the events riding on its pending prune."""
        self._running: set[str] = set()
        self._workers: set[str] = set()
        """Repositories whose worker task is alive (it loops while a prune is pending)."""
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = asyncio.Event()
        self._seen = RecentIds(self.settings.dedupe_window_s, self.settings.dedupe_max)

    @property
    def depth(self) -> int:
        """Work waiting to start: pending repositories plus queued jobs."""
        return len(self._pending) + sum(j.state is JobState.QUEUED for j in self._jobs.values())

    @property
    def running(self) -> int:
        return len(self._running) + sum(j.state is JobState.RUNNING for j in self._jobs.values())

    @property
    def closing(self) -> bool:
        return self._closing.is_set()

    def submit_push(self, event_id: str, repository: str) -> Status:
        """Ask for a prune of `repository` on behalf of event `event_id`: ACCEPTED,
        COALESCED or DUPLICATE; raises BacklogFull or ShuttingDown."""
        if event_id in self._seen:  # nothing to do, so even a draining server can say so
            return Status.DUPLICATE
        self._check_open()
        outcome = Status.COALESCED
        if repository not in self._pending:
            self._check_room()
            self._pending[repository] = self._now() + self.settings.debounce_s
            self._settled[repository] = asyncio.get_running_loop().create_future()
            outcome = Status.ACCEPTED
            if repository not in self._workers:
                self._workers.add(repository)
                self._spawn(self._work_on(repository), f"prune {repository}")
        # Remembered only once accepted: a 429'd event comes back with the same id.
        self._seen.add(event_id)
        self._riders.setdefault(repository, []).append(event_id)
        return outcome

    def pending(self, repository: str) -> asyncio.Future[bool] | None:
        """How the repository's pending prune will end: True when it finished without
        failures, False when it failed; cancelled if the server stops first."""
        return self._settled.get(repository)

    def submit_job(self, repositories: tuple[str, ...], *, dry_run: bool) -> Job:
        """Queue a manual prune (() = every repository); it shares the global limit."""
        self._check_open()
        self._check_room()
        job = Job(repositories=repositories, dry_run=dry_run)
        self._jobs[job.id] = job
        self._forget_old_jobs()
        self._spawn(self._run_job(job), f"job {job.id}")
        return job

    def job(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    async def close(self, grace_s: float) -> None:
        """Stop intake, let work in flight finish within `grace_s`, cancel what remains."""
        self._closing.set()  # also cuts pending debounces short: drain what was accepted
        if not self._tasks:
            return
        # Every task has taken its first step by the time this wait returns (its start was
        # queued before the timeout), so a cancelled one always runs its own cleanup.
        _, unfinished = await asyncio.wait(set(self._tasks), timeout=grace_s)
        if unfinished:
            log.warning(
                "shutdown: cancelling %d prunes unfinished after %.0f s; the next sweep catches up",
                len(unfinished),
                grace_s,
            )
            for task in unfinished:
                task.cancel()
            await asyncio.gather(*unfinished, return_exceptions=True)

    def _check_open(self) -> None:
        if self.closing:
            raise ShuttingDown("shutting down", self.settings.retry_after_s)

    def _check_room(self) -> None:
        if self.depth >= self.settings.max_backlog:
            raise BacklogFull(
                f"backlog full ({self.settings.max_backlog} waiting)", self.settings.retry_after_s
            )

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _work_on(self, repository: str) -> None:
        """The one worker of a repository: runs its pending prune until none is left."""
        try:
            while repository in self._pending:
                await self._debounce(self._pending[repository])
                async with self._slots:
                    # From here on a new push queues one more prune instead of merging.
                    del self._pending[repository]
                    settled = self._settled.pop(repository)
                    riders = self._riders.pop(repository, [])
                    self._running.add(repository)
                    try:
                        ok = await self._prune_one(repository)
                    except BaseException:
                        settled.cancel()
                        self._forget(riders)
                        raise
                    finally:
                        self._running.discard(repository)
                    settled.set_result(ok)
                    if not ok:
                        self._forget(riders)
                    self._after(repository, ok)
        finally:
            self._pending.pop(repository, None)  # only left over when cancelled
            self._riders.pop(repository, None)
            left = self._settled.pop(repository, None)
            if left is not None:
                left.cancel()
            self._workers.discard(repository)

    def _forget(self, event_ids: list[str]) -> None:
        """The prune these events asked for did not happen: a redelivery is new work."""
        for event_id in event_ids:
            self._seen.discard(event_id)

    def _after(self, repository: str, ok: bool) -> None:
        """On a failure, queue the repository again after a backoff (a push that arrives
        meanwhile rides on it); after `retries` failures in a row, give up until the next
        push or sweep."""
        failures = 0 if ok else self._failures.get(repository, 0) + 1
        if not failures or failures > self.settings.retries or self.closing:
            self._failures.pop(repository, None)
            if failures:
                log.error("%s: prune failed %d times; the next sweep catches up", repository,
                          failures, extra={"repository": repository})  # fmt: skip
            return
        self._failures[repository] = failures
        if repository in self._pending:
            return  # a push already queued the next prune
        delay = self.settings.retry_base_s * 2 ** (failures - 1)
        self._pending[repository] = self._now() + delay
        self._settled[repository] = asyncio.get_running_loop().create_future()
        self._on_retry(repository)
        log.warning("%s: prune failed; retry %d in %.0f s", repository, failures, delay,
                    extra={"repository": repository})  # fmt: skip

    async def _debounce(self, until: float) -> None:
        delay = until - self._now()
        if delay <= 0:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._closing.wait()

    async def _prune_one(self, repository: str) -> bool:
        """One prune; True when it finished without failures."""
        try:
            report = await self._pruner.prune((repository,), dry_run=False)
        except Exception:  # one failed prune must not stop the worker or the server
            log.exception("prune of %s failed", repository, extra={"repository": repository})
            return False
        deleted = sum(len(r.deleted) for r in report.repositories)
        log.info(
            "pruned %s: %d deleted%s",
            repository,
            deleted,
            "" if report.ok else ", with failures",
            extra={"repository": repository, "deleted": deleted, "ok": report.ok},
        )
        return report.ok

    async def _run_job(self, job: Job) -> None:
        try:
            async with self._slots:
                job.state, job.started_at = JobState.RUNNING, _utcnow()
                job.report = await self._pruner.prune(job.repositories, dry_run=job.dry_run)
        except asyncio.CancelledError:
            job.end(JobState.CANCELLED)
            raise
        except Exception as error:
            log.exception("job %s failed", job.id, extra={"job": job.id})
            job.error = str(error) or type(error).__name__
            job.end(JobState.ERROR)
        else:
            job.end(JobState.DONE)

    def _forget_old_jobs(self) -> None:
        finished = [j for j in self._jobs.values() if j.finished]
        for job in finished[: max(0, len(finished) - self.settings.reports_kept)]:
            job.report = None
        for job in finished[: max(0, len(finished) - self.settings.jobs_kept)]:
            del self._jobs[job.id]
