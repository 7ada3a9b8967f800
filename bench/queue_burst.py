"""The receiver benchmark's queue path: the burst of bench/receiver.py, sent to SQS instead.

The same repositories, images, events and policy as the HTTP path, against the same
in-process emulator; but each event is a SendMessage to a queue on moto's server (in its own
process, `bench/moto_proc.py`). One SendMessage to moto takes about 10 ms, against well
under 1 ms for a POST to the local receiver, and a burst that trickles in over seconds
measures the debounce, not the path; so each CI job's events (one buildx push: 6) enter the
queue in one SendMessageBatch, the repositories' jobs side by side, and `burst_s` reports how
long either burst took to send. The receiver app consumes the queue with the consumer
`serve --queue-url` runs, at its shipped settings (20 s long polls of up to 10 messages, the
shipped scheduler). Latency per repository: from its last send (the moment its planned state
is fixed) until the emulator's store shows that state. A prune that lists every image can
reach that state before the consumer has read every message, so `drained_ms` is the time
from the last send until the consumer has deleted every message; the queue must then be
empty (`left_in_queue`, read after the app drained).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from bench.child import speaking_child
from bench.receiver import (
    TIMEOUT_S,
    CountingPruner,
    burst_figures,
    counting_pruner,
    event,
    planned_at,
    planned_state_misses,
    push,
    seeded,
)
from cleaner.clients.aws import open_client
from cleaner.emulator import RegistryStore, running
from cleaner.receiver.auth import TokenAuth
from cleaner.receiver.http import Deps, make_app
from cleaner.receiver.metrics import Metrics, QueueMetrics
from cleaner.receiver.runner import ReceiverRunner
from cleaner.receiver.sqs import QueueConsumer, SqsQueue

REGION = "us-east-1"
KEYS = {"access_key": "bench", "secret_key": "bench"}  # moto checks no credentials


@contextmanager
def moto_process() -> Iterator[str]:
    """Start bench/moto_proc.py; yields its URL. Its request log goes nowhere."""
    with speaking_child([sys.executable, "-m", "bench.moto_proc"], quiet=True) as hello:
        yield str(hello["url"])


async def run_queue(
    repositories: int, pushes: int, latency_ms: float, throttle: Mapping[str, float]
) -> dict[str, Any]:
    burst = seeded(repositories)
    store, names, old = burst.store, burst.names, burst.old
    with moto_process() as moto_url:
        async with (
            open_client("sqs", region=REGION, endpoint_url=moto_url, **KEYS) as sender,
            running(store, latency_ms=latency_ms, throttle=throttle) as url,
        ):
            queue_url = await _queue(sender)
            async with (
                counting_pruner(url) as pruner,
                SqsQueue.connect(queue_url, region=REGION, **KEYS) as queue,
            ):
                figures = await _consume_burst(store, queue, sender, pruner, names, pushes, old)
            figures["left_in_queue"] = await _left(sender, queue_url)
    figures["wrong_state"] = planned_state_misses(store, names, pushes)
    return figures


async def _queue(sender: Any) -> str:
    """A standard queue as the stack makes it: 30 s visibility, redrive after 5 receipts."""
    dlq = (await sender.create_queue(QueueName="bench-dlq"))["QueueUrl"]
    arn = await sender.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])
    redrive = {"deadLetterTargetArn": arn["Attributes"]["QueueArn"], "maxReceiveCount": "5"}
    attributes = {"VisibilityTimeout": "30", "RedrivePolicy": json.dumps(redrive)}
    created = await sender.create_queue(QueueName="bench-push-events", Attributes=attributes)
    return str(created["QueueUrl"])


async def _consume_burst(
    store: RegistryStore,
    queue: SqsQueue,
    sender: Any,
    pruner: CountingPruner,
    names: list[str],
    pushes: int,
    old: dict[str, list[str]],
) -> dict[str, Any]:
    """The real receiver app with the queue consumer as its edge, fed one burst by SQS."""
    metrics = Metrics()
    consumer = QueueConsumer(queue, QueueMetrics(metrics.registry))
    app = make_app(Deps(pruner=pruner, auth=TokenAuth(None), metrics=metrics, edges=(consumer,)))
    runner = ReceiverRunner(app)
    await runner.setup()  # starts the consumer
    try:
        before = sum(store.calls.values())
        last_sent: dict[str, float] = {}
        started = time.perf_counter()

        async def job(name: str, build: int) -> int:
            """One CI job's push: its events (at most 10), in one SendMessageBatch."""
            events = [json.dumps(event(name, d, tag)) for d, tag in push(store, name, build)]
            entries = [{"Id": str(i), "MessageBody": body} for i, body in enumerate(events)]
            answer = await sender.send_message_batch(QueueUrl=queue.url, Entries=entries)
            if answer.get("Failed"):
                raise RuntimeError(f"SendMessageBatch failed: {answer['Failed']}")
            last_sent[name] = time.perf_counter()
            return len(events)

        sent = 0
        for build in range(pushes):  # the repositories' jobs run side by side, as in CI
            sent += sum(await asyncio.gather(*(job(name, build) for name in names)))
        burst_s = time.perf_counter() - started
        done = await asyncio.gather(*(planned_at(store, n, old[n][:pushes]) for n in names))
        latencies = [(done[i] - last_sent[n]) * 1000 for i, n in enumerate(names)]
        drained_ms = (await _all_deleted(metrics, sent) - max(last_sent.values())) * 1000
        calls = sum(store.calls.values()) - before
    finally:
        await runner.cleanup()  # drains: the consumer stops, prunes end, handled messages go
    figures = burst_figures(latencies, sent, len(names), pruner.prunes, calls, burst_s)
    figures["deleted"] = int(_deleted(metrics))
    figures["drained_ms"] = round(drained_ms, 1)
    return figures


def _deleted(metrics: Metrics) -> float:
    return metrics.registry.get_sample_value("ecr_cleaner_queue_deleted_total") or 0.0


async def _all_deleted(metrics: Metrics, sent: int) -> float:
    """When the consumer has deleted every message sent: the queue is empty."""
    deadline = time.perf_counter() + TIMEOUT_S
    while _deleted(metrics) < sent:
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{sent - _deleted(metrics):.0f} messages left after {TIMEOUT_S}s")
        await asyncio.sleep(0.005)
    return time.perf_counter()


async def _left(sender: Any, queue_url: str) -> int:
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    answer = await sender.get_queue_attributes(QueueUrl=queue_url, AttributeNames=names)
    return sum(int(answer["Attributes"][name]) for name in names)
