"""Prometheus metrics, one `CollectorRegistry` per app so tests and apps never share counts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder

from cleaner.planning.model import ErrorKind, RunReport
from cleaner.ports import Answer
from cleaner.receiver.scheduler import Pruner

EVENT_STATUSES = (
    "accepted",
    "coalesced",
    "duplicate",
    "ignored",
    "invalid",
    "too_large",
    "unauthorized",
    "throttled",
    "unavailable",
)
PRUNE_RESULTS = ("ok", "failed", "error", "cancelled")
# A push-triggered prune of one repository takes well under a second to a few minutes.
PRUNE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
# From a push's arrival to its repository pruned: the debounce (1 s by default) plus a prune.
PUSH_BUCKETS = (0.5, 1, 1.5, 2, 3, 5, 10, 30, 60, 120, 300, 600)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events = Counter(
            "ecr_cleaner_events", "EventBridge deliveries by outcome", ["status"], registry=r
        )
        self.prunes = Counter(
            "ecr_cleaner_prunes", "Prunes (not dry runs) by result", ["result"], registry=r
        )
        self.images_deleted = Counter(
            "ecr_cleaner_images_deleted", "Images deleted by prunes", registry=r
        )
        self.bytes_reclaimed = Counter(
            "ecr_cleaner_bytes_reclaimed", "Bytes of the images deleted by prunes", registry=r
        )
        self.ecr_calls = Counter(
            "ecr_cleaner_ecr_calls",
            "ECR API calls by operation and outcome",
            ["operation", "outcome"],
            registry=r,
        )
        self.events_unrouted = Counter(
            "ecr_cleaner_events_unrouted",
            "Push events for an account and region this receiver does not serve (ignored)",
            registry=r,
        )
        self.prune_retries = Counter(
            "ecr_cleaner_prune_retries",
            "Failed prunes scheduled again with backoff",
            registry=r,
        )
        self.prune_seconds = Histogram(
            "ecr_cleaner_prune_seconds", "Duration of prunes", buckets=PRUNE_BUCKETS, registry=r
        )
        self.queue_depth = Gauge(
            "ecr_cleaner_queue_depth", "Pending repositories plus queued jobs", registry=r
        )
        self.prunes_running = Gauge(
            "ecr_cleaner_prunes_running", "Prunes and jobs running now", registry=r
        )
        self.push_to_pruned = Histogram(
            "ecr_cleaner_push_to_pruned_seconds",
            "From a push event's arrival to its repository pruned",
            buckets=PUSH_BUCKETS,
            registry=r,
        )
        self.repository_errors = Counter(
            "ecr_cleaner_repository_errors",
            "Repositories whose prune failed as a whole, by cause (in_use: failed closed)",
            ["cause"],
            registry=r,
        )
        self.ready = Gauge(
            "ecr_cleaner_ready", "1 when /readyz last answered ready, else 0", registry=r
        )
        for status in EVENT_STATUSES:  # export zeros, so rates work from the first scrape
            self.events.labels(status)
        for result in PRUNE_RESULTS:
            self.prunes.labels(result)
        for kind in ErrorKind:
            self.repository_errors.labels(kind.value)

    def count_event(self, status: str) -> None:
        self.events.labels(status).inc()

    def count_unrouted(self) -> None:
        self.events_unrouted.inc()

    def count_retry(self, repository: str) -> None:
        self.prune_retries.inc()

    def record_ecr_call(self, operation: str, outcome: str) -> None:
        """Hook for the ECR adapter: one call per API attempt (operation: e.g. DescribeImages)."""
        self.ecr_calls.labels(operation, outcome).inc()

    def record_report(self, report: RunReport) -> None:
        self.images_deleted.inc(sum(len(r.deleted) for r in report.repositories))
        self.bytes_reclaimed.inc(report.reclaimed)
        for repository in report.repositories:
            if repository.error is not None:
                kind = repository.error_kind or ErrorKind.INTERNAL
                self.repository_errors.labels(kind.value).inc()

    def time_to_pruned(self, answer: Answer, clock: Callable[[], float] = time.monotonic) -> None:
        """Observe the push-to-pruned time of an accepted push when its prune succeeds.

        Every ingress edge calls this with the intake's answer, so the figure is the same
        whichever way the push arrived."""
        settled, arrived = answer.settled, clock()
        if settled is None:
            return

        def observe(done: asyncio.Future[bool]) -> None:
            if not done.cancelled() and done.exception() is None and done.result():
                self.push_to_pruned.observe(clock() - arrived)

        settled.add_done_callback(observe)

    def watch(self, depth: Callable[[], float], running: Callable[[], float]) -> None:
        """Read the gauges from the scheduler at scrape time."""
        self.queue_depth.set_function(depth)
        self.prunes_running.set_function(running)

    def exposition(self, accept: str) -> tuple[bytes, str]:
        """The text format Prometheus asked for (OpenMetrics or 0.0.4) and its content type."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type


LEFT_REASONS = ("failed", "unfinished", "rejected")
QUEUE_OPERATIONS = (
    "ReceiveMessage",
    "DeleteMessage",
    "ChangeMessageVisibility",
    "GetQueueAttributes",
)


class QueueMetrics:
    """The queue intake's figures, on the app's registry; only a process with a queue has them."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.received = Counter(
            "ecr_cleaner_queue_received", "Messages received from the queue", registry=r
        )
        self.deleted = Counter(
            "ecr_cleaner_queue_deleted",
            "Messages deleted once handled (pruned, ignored or duplicate)",
            registry=r,
        )
        self.left = Counter(
            "ecr_cleaner_queue_left",
            "Messages left in the queue for redelivery, by why: the prune failed, it was "
            "unfinished at shutdown, or the backlog was full",
            ["reason"],
            registry=r,
        )
        self.poison = Counter(
            "ecr_cleaner_queue_poison",
            "Receipts of messages that cannot be parsed (left for the dead-letter queue)",
            registry=r,
        )
        self.errors = Counter(
            "ecr_cleaner_queue_errors",
            "Queue calls that failed after retries, and receive-loop failures",
            ["operation"],
            registry=r,
        )
        self.oldest_age = Gauge(
            "ecr_cleaner_queue_oldest_message_age_seconds",
            "Age of the oldest message this process holds, from the queue's SentTimestamp "
            "(0 when it holds none)",
            registry=r,
        )
        self.messages = Gauge(
            "ecr_cleaner_queue_messages",
            "Messages in the queue as its attributes report them (ApproximateNumberOfMessages, "
            "...NotVisible, ...Delayed), read periodically",
            ["state"],
            registry=r,
        )
        for reason in LEFT_REASONS:
            self.left.labels(reason)
        for operation in (*QUEUE_OPERATIONS, "internal"):
            self.errors.labels(operation)


class InstrumentedPruner:
    """Counts and times real prunes; dry runs (plans) pass through uncounted."""

    def __init__(self, pruner: Pruner, metrics: Metrics) -> None:
        self._pruner = pruner
        self._metrics = metrics

    async def prune(self, repositories: tuple[str, ...], *, dry_run: bool) -> RunReport:
        if dry_run:
            return await self._pruner.prune(repositories, dry_run=True)
        result = "error"
        started = time.perf_counter()
        try:
            report = await self._pruner.prune(repositories, dry_run=False)
            result = "ok" if report.ok else "failed"
            self._metrics.record_report(report)
            return report
        except asyncio.CancelledError:
            result = "cancelled"
            raise
        finally:
            self._metrics.prunes.labels(result).inc()
            self._metrics.prune_seconds.observe(time.perf_counter() - started)
