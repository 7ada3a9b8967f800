"""The sweep's metrics: what one run did, pushed to a Prometheus Pushgateway at its end, or
written for node-exporter's textfile collector.

A CronJob's pod is gone long before Prometheus would scrape it, which is the case the
Pushgateway exists for (Prometheus docs, "When to use the Pushgateway": "capturing the
outcome of a service-level batch job"). Every figure is a gauge describing the last run:
what one run deleted is not a counter that carries on across runs.

`last_success_timestamp_seconds` moves only when a run succeeds (exit code 0). A failed run
leaves the previous value in place, which is what the "no successful sweep" alert reads:
- Pushgateway: the push is a POST (`pushadd_to_gateway`), which replaces only the metrics
  it carries, so the gateway keeps the last success time the failed run did not send;
- textfile: the previous file's value is carried into the new file.

Per-repository figures are recorded as each repository finishes (through the engine's
`Progress.on_repository_done`); the run's outcome and duration when it ends. Publishing
never fails a sweep: a push or a write that fails is a warning, the exit code unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.exposition import pushadd_to_gateway, write_to_textfile
from prometheus_client.parser import text_string_to_metric_families

from cleaner.engine import Progress
from cleaner.planning.model import ErrorKind, RepositoryReport, RunReport, Shard
from cleaner.settings import MetricsSettings

log = logging.getLogger(__name__)

PREFIX = "ecr_cleaner_sweep_"
LAST_SUCCESS = PREFIX + "last_success_timestamp_seconds"
PUSH_TIMEOUT_S = 10.0
"""A Pushgateway answers in milliseconds; one that hangs must not hold the pod for long."""


class SweepMetrics:
    """One run's figures, in a registry of their own."""

    def __init__(self, *, dry_run: bool, clock: Callable[[], float] = time.time) -> None:
        self.registry = CollectorRegistry()
        self._clock = clock

        def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
            return Gauge(PREFIX + name, doc, labels, registry=self.registry)

        per = ("account", "region", "repository")  # one repository name in many targets
        self.repositories = gauge("repositories", "Repositories the last run pruned")
        self.images = gauge("images", "Images the last run listed")
        self.expired = gauge("images_expired", "Images the last run's plans expired")
        self.deleted = gauge("images_deleted", "Images the last run deleted")
        self.reclaimed = gauge("bytes_reclaimed", "Bytes of the images the last run deleted")
        self.delete_failures = gauge("delete_failures", "Images whose delete failed")
        self.errors = gauge(
            "repository_errors", "Repositories that failed as a whole, by cause", ("cause",)
        )
        self.repo_images = gauge("repository_images", "Images listed", per)
        self.repo_expired = gauge("repository_images_expired", "Images expired by the plan", per)
        self.repo_deleted = gauge("repository_images_deleted", "Images deleted", per)
        self.repo_reclaimed = gauge("repository_bytes_reclaimed", "Bytes deleted", per)
        self.repo_delete_failures = gauge("repository_delete_failures", "Failed deletes", per)
        self.repo_failed = gauge(
            "repository_failed", "1 when the repository failed as a whole (see the log)", per
        )
        self.ecr_calls = gauge(
            "ecr_calls",
            "ECR API calls of the last run by operation and outcome",
            ("operation", "outcome"),
        )
        self.dry_run = gauge("dry_run", "1 when the last run was a dry run")
        self.succeeded = gauge("succeeded", "1 when the last run succeeded (exit code 0)")
        self.duration = gauge("duration_seconds", "How long the last run took")
        self.last_run = gauge("last_run_timestamp_seconds", "When the last run ended")
        self.dry_run.set(1 if dry_run else 0)
        for kind in ErrorKind:  # zeros, so every cause has a series from the first run
            self.errors.labels(kind.value)
        self.ok = False

    def repository_done(self, report: RepositoryReport) -> None:
        """One repository's figures, as soon as it is finished."""
        name = (report.account, report.region, report.repository)
        images = len(report.plan.decisions) if report.plan else 0
        expired = len(report.plan.expire) if report.plan else 0
        figures = (
            (self.images, self.repo_images, images),
            (self.expired, self.repo_expired, expired),
            (self.deleted, self.repo_deleted, len(report.deleted)),
            (self.reclaimed, self.repo_reclaimed, report.reclaimed),
            (self.delete_failures, self.repo_delete_failures, len(report.failed)),
        )
        for total, per_repository, value in figures:
            total.inc(value)
            per_repository.labels(*name).set(value)
        self.repositories.inc()
        self.repo_failed.labels(*name).set(1 if report.error is not None else 0)
        if report.error is not None:
            self.errors.labels((report.error_kind or ErrorKind.INTERNAL).value).inc()

    def record_ecr_call(self, operation: str, outcome: str) -> None:
        """Hook for the ECR adapter: one call per API attempt (outcome: ok, throttled, error)."""
        self.ecr_calls.labels(operation, outcome).inc()

    def watch(self, progress: Progress) -> Progress:
        """`progress`, which also records each repository here as it finishes."""
        return progress.recording(self.repository_done)

    def done(self, report: RunReport) -> None:
        """The run produced its report; it succeeded if the report is ok (exit code 0)."""
        self.ok = report.ok

    def finish(self, duration_s: float, *, previous_success: float | None = None) -> None:
        """The run's outcome and time; the last success time only when it succeeded (or the
        previous one, for a sink that would otherwise forget it)."""
        now = self._clock()
        self.succeeded.set(1 if self.ok else 0)
        self.duration.set(duration_s)
        self.last_run.set(now)
        success = now if self.ok else previous_success
        if success is not None:
            last = Gauge(LAST_SUCCESS, "When a run last succeeded (exit 0)", registry=self.registry)
            last.set(success)


def grouping_key(shard: Shard | None) -> dict[str, str]:
    """The shard's index: pods of an Indexed Job each keep their own group; a sweep that is
    not sharded is the one shard "0"."""
    return {"shard": str(shard.index if shard else 0)}


class Recorder:
    """What the CLI holds during a sweep: records when asked to, publishes at the end."""

    def __init__(self, metrics: SweepMetrics | None) -> None:
        self.metrics = metrics
        self.on_call = metrics.record_ecr_call if metrics else None
        """For the ECR adapter's call hook; None when nothing is recorded."""

    def watch(self, progress: Progress) -> Progress:
        return self.metrics.watch(progress) if self.metrics else progress

    def done(self, report: RunReport) -> None:
        if self.metrics:
            self.metrics.done(report)


@asynccontextmanager
async def recording(
    sinks: MetricsSettings | None, *, dry_run: bool, shard: Shard | None
) -> AsyncIterator[Recorder]:
    """Record one run and publish it when the run ends, also when it raised."""
    if sinks is None or not (sinks.pushgateway or sinks.file):
        yield Recorder(None)
        return
    metrics = SweepMetrics(dry_run=dry_run)
    started = time.monotonic()
    try:
        yield Recorder(metrics)
    except Exception:
        await publish(metrics, sinks, shard, time.monotonic() - started)
        raise
    await publish(metrics, sinks, shard, time.monotonic() - started)


async def publish(
    metrics: SweepMetrics, sinks: MetricsSettings, shard: Shard | None, duration_s: float
) -> None:
    """Finish the figures and send them to every sink; a sink that fails is a warning."""
    previous = previous_success(sinks.file) if sinks.file and not metrics.ok else None
    metrics.finish(duration_s, previous_success=previous)
    if sinks.pushgateway:
        await push(metrics.registry, sinks.pushgateway, sinks.job, grouping_key(shard))
    if sinks.file:
        write(metrics.registry, sinks.file)


async def push(
    registry: CollectorRegistry, gateway: str, job: str, grouping: dict[str, str]
) -> None:
    """POST to /metrics/job/<job>/shard/<i> (prometheus_client builds the path)."""
    try:
        # prometheus_client pushes with urllib, which blocks: in a thread, bounded.
        await asyncio.to_thread(
            pushadd_to_gateway,
            gateway,
            job=job,
            registry=registry,
            grouping_key=grouping,
            timeout=PUSH_TIMEOUT_S,
        )
    except (OSError, ValueError) as error:  # URLError and HTTPError are OSErrors
        log.warning("sweep metrics not pushed to %s: %s", gateway, error)
        return
    log.info("sweep metrics pushed to %s (job %s, shard %s)", gateway, job, grouping["shard"])


def write(registry: CollectorRegistry, path: str) -> None:
    """Written to a temporary file and renamed, so the collector never reads half a file."""
    try:
        write_to_textfile(path, registry)
    except OSError as error:
        log.warning("sweep metrics not written to %s: %s", path, error.strerror or error)
        return
    log.info("sweep metrics written to %s", path)


def previous_success(path: str) -> float | None:
    """The last success time in the file an earlier run wrote, if it can be read."""
    try:
        text = Path(path).read_text(encoding="utf-8")
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == LAST_SUCCESS:
                    return float(sample.value)
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return None
