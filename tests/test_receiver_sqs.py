"""The queue intake end to end: EventBridge-shaped messages on moto's SQS server, the real
consumer (aiobotocore), the app's intake and scheduler, the real engine and EcrRegistry
against our emulator.

moto's EventBridge -> SQS delivery leaves `account` out of the body, unlike the event
structure in the EventBridge user guide, so the tests send the AWS samples themselves, as an
SQS target receives them. Every receive is bounded: the consumer's long poll by its own
timeout (and a 1 s wait here), the tests' reads are short polls, each test by pytest-timeout.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestClient, TestServer

from cleaner.cli import serve
from cleaner.emulator import RegistryStore, running
from cleaner.engine import Engine
from cleaner.errors import ConfigError, RegistryError
from cleaner.planning.model import RunReport
from cleaner.planning.policy_file import parse_policy_file
from cleaner.ports import Answer, Status
from cleaner.receiver.auth import TokenAuth
from cleaner.receiver.events import Scope
from cleaner.receiver.http import Deps, make_app
from cleaner.receiver.metrics import Metrics, QueueMetrics
from cleaner.receiver.pruner import EnginePruner
from cleaner.receiver.scheduler import Pruner, SchedulerSettings
from cleaner.receiver.sqs import ConsumerSettings, QueueConsumer, SqsQueue, queue_endpoint
from cleaner.registries.ecr import EcrRegistry
from cleaner.settings import parse_args
from tests.support.backends import ACCOUNT, REGION, EmulatorBackend, MotoBackend
from tests.support.fakes import until
from tests.support.policies import keep_newest_rule
from tests.support.queues import TestQueue, sample_event

TOKEN = "sqs-token"
KEEP = 2
POLICY_DOC = {"rules": [keep_newest_rule(KEEP)]}
UNMATCHED = "no/policy"


@dataclass
class Recording:
    """The real EnginePruner behind a count of prunes, a delay and scripted failures."""

    inner: Pruner
    delay_s: float = 0.0
    failures: int = 0
    prunes: Counter[str] = field(default_factory=Counter)

    async def prune(self, repositories: tuple[str, ...], *, dry_run: bool) -> RunReport:
        self.prunes.update(repositories)
        await asyncio.sleep(self.delay_s)
        if self.failures:
            self.failures -= 1
            raise RegistryError("DescribeImages: ServerException: scripted", code="Server")
        return await self.inner.prune(repositories, dry_run=dry_run)


@dataclass
class Harness:
    queue: TestQueue
    store: RegistryStore
    registry: EmulatorBackend
    pruner: Recording
    metrics: Metrics
    client: TestClient[Any, Any]

    def figure(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0

    def seed(self, repository: str, count: int = 5) -> list[str]:
        """`count` images a day apart, oldest first."""
        self.registry.create_repository(repository)
        now = datetime.now(UTC)
        return [
            self.registry.push(repository, [f"b{i}"], now - timedelta(days=count - i), f"{i}")
            for i in range(count)
        ]

    def digests(self, repository: str) -> set[str]:
        return self.registry.digests(repository)

    async def all_deleted(self, count: int) -> None:
        """`count` messages deleted by the consumer, and the queue holds none."""
        await until(lambda: self.figure("ecr_cleaner_queue_deleted_total") >= count, within=10)
        await until(self.queue.empty)
        assert self.figure("ecr_cleaner_queue_deleted_total") == count


@asynccontextmanager
async def receiver(
    moto: MotoBackend,
    *,
    visibility_s: int = 1,
    drain_timeout_s: float = 10.0,
    schedule: SchedulerSettings | None = None,
    **pruner_options: Any,
) -> AsyncIterator[Harness]:
    """The app with the queue consumer as its edge, its client started; closing it drains."""
    queue = TestQueue(moto.endpoint_url, visibility_s=visibility_s)
    store = RegistryStore()
    async with (
        running(store) as url,
        EcrRegistry.connect(region=REGION, endpoint_url=url) as registry,
        SqsQueue.connect(queue.url) as sqs,
    ):
        engine = EnginePruner(Engine(registry), parse_policy_file(POLICY_DOC))
        pruner = Recording(engine, **pruner_options)
        metrics = Metrics()
        consumer = QueueConsumer(
            sqs, QueueMetrics(metrics.registry), ConsumerSettings(wait_s=1, depth_every_s=0.2)
        )
        deps = Deps(
            pruner=pruner,
            auth=TokenAuth(TOKEN),
            scope=Scope(account=ACCOUNT, region=REGION),
            schedule=schedule or SchedulerSettings(debounce_s=0.1),
            drain_timeout_s=drain_timeout_s,
            metrics=metrics,
            edges=(consumer,),
            covers=lambda repository: repository != UNMATCHED,
        )
        client: TestClient[Any, Any] = TestClient(TestServer(make_app(deps)))
        await client.start_server()
        try:
            yield Harness(queue, store, EmulatorBackend(store, url), pruner, metrics, client)
        finally:
            await client.close()


async def test_pushes_from_the_queue_prune_their_repository_and_are_deleted(
    moto: MotoBackend,
) -> None:
    async with receiver(moto) as r:
        web, api = r.seed("team/web", 6), r.seed("team/api", 4)
        for n in range(3):  # one CI burst: three tags of one build
            r.queue.send(sample_event("push", "team/web", event_id=f"web-{n}"))
        r.queue.send(sample_event("push", "team/api"))
        await until(lambda: r.digests("team/web") == set(web[-KEEP:]), within=10)
        await until(lambda: r.digests("team/api") == set(api[-KEEP:]))
        await r.all_deleted(4)
        async with r.client.get("/readyz") as ready:
            assert ready.status == 200
        assert r.figure("ecr_cleaner_queue_received_total") == 4
        assert r.pruner.prunes == {"team/web": 1, "team/api": 1}
        await until(lambda: r.figure("ecr_cleaner_queue_messages", state="visible") == 0)


async def test_ignored_events_are_consumed_and_delete_nothing(moto: MotoBackend) -> None:
    async with receiver(moto) as r:
        kept = set(r.seed("app", 5)) | set(r.seed(UNMATCHED, 5))
        failed = json.loads(sample_event("push", "app", event_id="failed-push"))
        failed["detail"]["result"] = "FAILURE"
        bodies = [
            *(sample_event(name, "app") for name in ("delete", "scan", "archive", "replication")),
            json.dumps(failed).encode(),
            sample_event("push", "app", event_id="other-account", account="210987654321"),
            sample_event("push", "app", event_id="other-region", region="eu-west-1"),
            sample_event("push", UNMATCHED, event_id="no-policy-entry"),
        ]
        for body in bodies:
            r.queue.send(body)
        await r.all_deleted(len(bodies))
        await asyncio.sleep(0.3)  # three debounces: time for a wrongly scheduled prune
        assert r.digests("app") | r.digests(UNMATCHED) == kept
        assert r.pruner.prunes == {}
        assert r.figure("ecr_cleaner_queue_poison_total") == 0


async def test_a_poison_message_reaches_the_dead_letter_queue_and_the_next_is_handled(
    moto: MotoBackend, caplog: pytest.LogCaptureFixture
) -> None:
    poison = '{"id": "x", "source": "aws.ecr", "detail": "SECRET-LOOKING BODY'
    async with receiver(moto) as r:
        digests = r.seed("after", 4)
        untouched = set(r.seed("bystander", 4))
        r.queue.send(poison)
        r.queue.send(sample_event("push", "after"))
        await until(lambda: r.digests("after") == set(digests[-KEEP:]), within=10)
        # Two receipts (maxReceiveCount 2), then the queue's redrive moves it.
        await until(lambda: r.queue.counts(r.queue.dlq_url)[0] == 1, within=15)
        await r.all_deleted(1)
        assert r.queue.dead_letters() == [poison]
        assert r.figure("ecr_cleaner_queue_poison_total") == 2
        assert r.digests("bystander") == untouched
        assert r.pruner.prunes == {"after": 1}
    logged = [rec.getMessage() for rec in caplog.records if "cannot be parsed" in rec.getMessage()]
    assert len(logged) == 2 and not any("SECRET" in line for line in logged)


async def test_a_slow_prune_keeps_its_message_hidden_until_it_is_deleted(
    moto: MotoBackend,
) -> None:
    """The heartbeat: a 1 s visibility timeout, a prune that takes 2.5 s, one receipt."""
    async with receiver(moto, delay_s=2.5) as r:
        digests = r.seed("slow", 4)
        r.queue.send(sample_event("push", "slow"))
        await until(lambda: r.pruner.prunes["slow"] == 1)
        for _ in range(4):  # past its first visibility timeout, several times over
            await asyncio.sleep(0.5)
            assert r.queue.counts() == (0, 1)
        await until(lambda: r.digests("slow") == set(digests[-KEEP:]), within=10)
        await r.all_deleted(1)
        assert r.figure("ecr_cleaner_queue_received_total") == 1
        assert r.pruner.prunes == {"slow": 1}


async def test_a_failed_prune_leaves_its_message_and_the_redelivery_converges(
    moto: MotoBackend,
) -> None:
    # No scheduler retries: the queue's redelivery is what must bring the prune back.
    schedule = SchedulerSettings(debounce_s=0.1, retries=0)
    async with receiver(moto, failures=1, schedule=schedule) as r:
        digests = r.seed("flaky", 5)
        r.queue.send(sample_event("push", "flaky"))
        await until(lambda: r.figure("ecr_cleaner_queue_left_total", reason="failed") == 1)
        assert r.queue.counts() == (0, 1) and len(r.digests("flaky")) == 5  # kept, hidden
        await until(lambda: r.digests("flaky") == set(digests[-KEEP:]), within=10)
        await r.all_deleted(1)
        assert r.figure("ecr_cleaner_queue_received_total") == 2
        assert r.pruner.prunes == {"flaky": 2}


async def test_a_full_backlog_leaves_the_message_for_later(moto: MotoBackend) -> None:
    schedule = SchedulerSettings(debounce_s=1.0, max_backlog=1, retry_after_s=1)
    async with receiver(moto, schedule=schedule) as r:
        first, second = r.seed("first", 4), r.seed("second", 4)
        r.queue.send(sample_event("push", "first", event_id="first"))
        r.queue.send(sample_event("push", "second", event_id="second"))  # no room: first waits
        await until(lambda: r.figure("ecr_cleaner_queue_left_total", reason="rejected") >= 1)
        await until(lambda: r.digests("second") == set(second[-KEEP:]), within=10)
        assert r.digests("first") == set(first[-KEEP:])
        await r.all_deleted(2)
        assert r.pruner.prunes == {"first": 1, "second": 1}


@pytest.mark.parametrize(("drain_timeout_s", "finished"), [(0.2, False), (10.0, True)])
async def test_shutdown_mid_prune_deletes_only_what_finished(
    moto: MotoBackend, drain_timeout_s: float, finished: bool
) -> None:
    async with receiver(moto, delay_s=1.0, drain_timeout_s=drain_timeout_s) as r:
        digests = r.seed("mid", 4)
        r.queue.send(sample_event("push", "mid"))
        await until(lambda: r.pruner.prunes["mid"] == 1)
        await r.client.close()  # drains: the consumer stops, then the scheduler closes
        left = r.figure("ecr_cleaner_queue_left_total", reason="unfinished")
        deleted = r.figure("ecr_cleaner_queue_deleted_total")
    if finished:
        assert (left, deleted) == (0, 1) and r.queue.empty()
        assert r.digests("mid") == set(digests[-KEEP:])
    else:
        assert (left, deleted) == (1, 0) and sum(r.queue.counts()) == 1
        assert r.digests("mid") == set(digests)


async def test_readiness_reports_a_queue_that_stops_answering(moto: MotoBackend) -> None:
    async with receiver(moto) as r:
        async with r.client.get("/readyz") as ready:
            assert ready.status == 200
        r.queue.client.delete_queue(QueueUrl=r.queue.url)

        async def queue_unready() -> bool:
            async with r.client.get("/readyz") as answer:
                body: dict[str, Any] = await answer.json()
            return any(
                why.startswith("queue: ReceiveMessage failed") for why in body.get("reasons", [])
            )

        async with asyncio.timeout(10):
            while not await queue_unready():  # noqa: ASYNC110 - the app's state, over HTTP
                await asyncio.sleep(0.1)
        assert r.figure("ecr_cleaner_queue_errors_total", operation="ReceiveMessage") >= 1


def test_a_queue_url_names_its_region_or_its_local_endpoint() -> None:
    aws = "https://sqs.eu-west-1.amazonaws.com/123456789012/push-events"
    assert queue_endpoint(aws) == ("eu-west-1", None)
    china = "https://sqs.cn-north-1.amazonaws.com.cn/123456789012/q"
    assert queue_endpoint(china) == ("cn-north-1", None)
    assert queue_endpoint("http://127.0.0.1:5000/123456789012/q") == (None, "http://127.0.0.1:5000")


@pytest.mark.parametrize(
    "url",
    ["sqs.us-east-1.amazonaws.com/1/q", "ftp://host/1/q", "https://host/", "https://h/1/q?x=1"],
)
def test_a_bad_queue_url_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match="--queue-url"):
        parse_args(["serve", "--policy", "/p", "--queue-url", url], environ={})
    with pytest.raises(ConfigError, match="CLEANER_QUEUE_URL"):
        parse_args(["serve", "--policy", "/p"], environ={"CLEANER_QUEUE_URL": url})


# --- the process: serve --queue-url -------------------------------------------------------


@pytest.fixture
def policy_path(tmp_path: Path) -> str:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(POLICY_DOC))
    return path.as_posix()


def serve_settings(policy: str, endpoint: str, queue_url: str, *extra: str) -> Any:
    return parse_args(
        [
            *("serve", "--policy", policy, "--host", "127.0.0.1", "--port", "0"),
            *("--endpoint-url", endpoint, "--region", REGION, "--debounce", "0.05"),
            *("--log-format", "text", "--queue-url", queue_url, *extra),
        ]
    )


async def started_server(settings: Any) -> tuple[asyncio.Task[int], str]:
    started: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(settings, on_started=started.set_result))
    done, _ = await asyncio.wait({task, started}, timeout=20, return_when="FIRST_COMPLETED")
    if task in done:
        task.result()  # raises why it stopped
    return task, await started


async def test_serve_with_a_queue_url_prunes_empties_the_queue_and_exits_0(
    moto: MotoBackend, policy_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLEANER_TOKEN", TOKEN)
    queue = TestQueue(moto.endpoint_url, visibility_s=5)
    store = RegistryStore()
    async with running(store) as url:
        registry = EmulatorBackend(store, url)
        registry.create_repository("team/web")
        now = datetime.now(UTC)
        digests = [registry.push("team/web", [f"v{i}"], now - timedelta(days=9 - i), f"{i}")
                   for i in range(5)]  # fmt: skip
        server, base = await started_server(serve_settings(policy_path, url, queue.url))
        queue.send(sample_event("push", "team/web"))
        queue.send(sample_event("delete", "team/web"))
        await until(lambda: registry.digests("team/web") == set(digests[-KEEP:]), within=15)
        async with ClientSession(base) as http:

            async def both_deleted() -> bool:
                async with http.get("/metrics") as scraped:
                    return "ecr_cleaner_queue_deleted_total 2.0" in await scraped.text()

            async with asyncio.timeout(10):
                while not await both_deleted():  # noqa: ASYNC110 - the process's state
                    await asyncio.sleep(0.05)
            async with http.get("/readyz") as ready:
                assert ready.status == 200
        await until(queue.empty)
        os.kill(os.getpid(), signal.SIGTERM)
        assert await asyncio.wait_for(server, timeout=15) == 0


async def test_sigterm_mid_prune_leaves_that_message_in_the_queue_and_exits_0(
    moto: MotoBackend, policy_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLEANER_TOKEN", TOKEN)
    queue = TestQueue(moto.endpoint_url, visibility_s=5)
    store = RegistryStore()
    async with running(store, latency_ms=300) as url:
        registry = EmulatorBackend(store, url)
        registry.create_repository("slow")
        now = datetime.now(UTC)
        digests = {registry.push("slow", [f"v{i}"], now - timedelta(days=9 - i), f"{i}")
                   for i in range(5)}  # fmt: skip
        settings = serve_settings(policy_path, url, queue.url, "--drain-timeout", "0.05")
        server, _ = await started_server(settings)
        queue.send(sample_event("push", "slow"))
        await until(lambda: store.calls["DescribeImages"] > 0, within=10)
        assert store.calls["BatchDeleteImage"] == 0
        os.kill(os.getpid(), signal.SIGTERM)  # mid-prune: listed, not yet deleted
        assert await asyncio.wait_for(server, timeout=15) == 0
        assert registry.digests("slow") == digests
    assert sum(queue.counts()) == 1  # still there, for another replica or the next start


async def test_a_queue_that_does_not_exist_is_a_config_error_at_start(
    moto: MotoBackend, policy_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLEANER_TOKEN", TOKEN)
    missing = f"{moto.endpoint_url}/{ACCOUNT}/no-such-queue"
    async with running(RegistryStore()) as url:
        with pytest.raises(ConfigError, match="no such queue"):
            await started_server(serve_settings(policy_path, url, missing))


class ExplodingIntake:
    """An intake with a bug for one body: the consumer must outlive it."""

    def submit(self, body: bytes) -> Answer:
        if body == b"boom":
            raise RuntimeError("a bug in the intake")
        return Answer(Status.IGNORED, "id", reason="not a push")


async def test_an_intake_that_raises_leaves_the_message_and_the_loop_goes_on(
    moto: MotoBackend,
) -> None:
    queue = TestQueue(moto.endpoint_url)
    metrics = Metrics()
    async with SqsQueue.connect(queue.url) as sqs:
        consumer = QueueConsumer(sqs, QueueMetrics(metrics.registry), ConsumerSettings(wait_s=1))
        await consumer.start(ExplodingIntake())
        try:
            queue.send("boom")
            queue.send("fine")
            figure = metrics.registry.get_sample_value
            await until(lambda: figure("ecr_cleaner_queue_deleted_total") == 1)
            assert figure("ecr_cleaner_queue_errors_total", {"operation": "internal"}) >= 1
            assert await consumer.readiness() is None
        finally:
            await consumer.stop()
            await consumer.finish()
        assert await consumer.readiness() == "queue: stopped"
