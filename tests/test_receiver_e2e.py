"""The receiver end to end: real aiohttp server on a socket, the real engine and EcrRegistry
over HTTP, against our emulator and against moto.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestClient

from cleaner.cli import serve
from cleaner.emulator import RegistryStore, running
from cleaner.engine import Engine
from cleaner.errors import ConfigError
from cleaner.planning.model import RunReport
from cleaner.planning.policy_file import parse_policy_file
from cleaner.receiver.auth import TokenAuth
from cleaner.receiver.events import Scope
from cleaner.receiver.http import MAX_BODY, RUNTIME, Deps, make_app
from cleaner.receiver.pruner import EnginePruner
from cleaner.receiver.scheduler import Pruner, SchedulerSettings
from cleaner.registries.ecr import EcrRegistry
from cleaner.settings import Settings, parse_args
from tests.support.backends import ACCOUNT, REGION, Backend, EmulatorBackend
from tests.support.fakes import until

TOKEN = "e2e-token"
SAMPLES = Path(__file__).parent / "data" / "events"
KEEP = 2
POLICY_DOC = {
    "rules": [
        {
            "rulePriority": 1,
            "description": f"keep {KEEP}",
            "selection": {
                "tagStatus": "any",
                "countType": "imageCountMoreThan",
                "countNumber": KEEP,
            },
            "action": {"type": "expire"},
        }
    ]
}
# The emulator serves any region, so its tests send the push sample exactly as AWS
# documents it (us-west-2); moto keeps its images in the region the backend seeds.
SAMPLE_REGION = "us-west-2"


@dataclass
class CountingPruner:
    """The real EnginePruner, with a count of prunes per repository for the burst test."""

    inner: Pruner
    prunes: Counter[str] = field(default_factory=Counter)

    async def prune(self, repositories: tuple[str, ...], *, dry_run: bool) -> RunReport:
        if not dry_run:
            self.prunes.update(repositories)
        return await self.inner.prune(repositories, dry_run=dry_run)


@dataclass
class Receiver:
    client: TestClient[web.Request, web.Application]
    backend: Backend
    pruner: CountingPruner
    region: str

    async def send(self, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {TOKEN}"} if headers is None else headers
        async with self.client.post("/events", data=body, headers=headers) as response:
            return response.status, await response.json()

    def event(self, name: str, repository: str, event_id: str | None = None) -> bytes:
        """A verbatim sample with the repository renamed (and the region, for moto)."""
        doc = json.loads((SAMPLES / f"{name}.json").read_text())
        doc["detail"]["repository-name"] = repository
        doc["region"] = self.region
        if event_id is not None:
            doc["id"] = event_id
        return json.dumps(doc).encode()


def seed(backend: Backend, repository: str, count: int = 5) -> list[str]:
    """`count` images a day apart, oldest first."""
    backend.create_repository(repository)
    now = datetime.now(UTC)
    return [
        backend.push(repository, [f"b{i}"], now - timedelta(days=count - i), f"{repository}{i}")
        for i in range(count)
    ]


@pytest.fixture
async def receiver(backend: Backend, aiohttp_client: Any) -> AsyncIterator[Receiver]:
    region = SAMPLE_REGION if isinstance(backend, EmulatorBackend) else REGION
    async with EcrRegistry.connect(region=region, endpoint_url=backend.endpoint_url) as registry:
        pruner = CountingPruner(EnginePruner(Engine(registry), parse_policy_file(POLICY_DOC)))
        deps = Deps(
            pruner=pruner,
            auth=TokenAuth(TOKEN),
            scope=Scope(account=ACCOUNT, region=region),
            schedule=SchedulerSettings(debounce_s=0.1),
            drain_timeout_s=10,
        )
        client = await aiohttp_client(make_app(deps))
        try:
            yield Receiver(client, backend, pruner, region)
        finally:
            await client.close()  # drains the app while the registry client is still open


@pytest.mark.parametrize("header", ["Authorization", "X-Api-Key"])
async def test_the_push_sample_prunes_its_repository_within_seconds(
    receiver: Receiver, header: str
) -> None:
    digests = seed(receiver.backend, "team/web", 6)
    value = f"Bearer {TOKEN}" if header == "Authorization" else TOKEN
    status, answer = await receiver.send(receiver.event("push", "team/web"), {header: value})
    assert (status, answer["status"], answer["repository"]) == (202, "accepted", "team/web")
    took = await until(lambda: receiver.backend.digests("team/web") == set(digests[-KEEP:]))
    assert took < 3
    assert receiver.pruner.prunes == {"team/web": 1}


async def test_rejected_requests_and_other_events_change_nothing(receiver: Receiver) -> None:
    digests = set(seed(receiver.backend, "app"))
    push = receiver.event("push", "app")
    attempts = [
        (push, {}),
        (push, {"Authorization": "Bearer wrong"}),
        (push, {"X-Api-Key": "wrong"}),
        (b'{"id": "1", "source": "aws.ecr"', None),
        (b"[]", None),
        (receiver.event("push", "App!"), None),
        (push + b" " * (MAX_BODY + 1 - len(push)), None),
    ]
    statuses = [(await receiver.send(body, headers))[0] for body, headers in attempts]
    assert statuses == [401, 401, 401, 400, 400, 400, 413]
    failed = json.loads(receiver.event("push", "app", event_id="failed"))
    failed["detail"]["result"] = "FAILURE"
    ignored = [
        receiver.event("delete", "app"),
        receiver.event("scan", "app"),
        json.dumps(failed).encode(),
    ]
    for body in ignored:
        status, answer = await receiver.send(body)
        assert (status, answer["status"]) == (200, "ignored")
    await asyncio.sleep(0.3)  # three debounces: time for a wrongly scheduled prune to run
    assert receiver.backend.digests("app") == digests
    assert receiver.pruner.prunes == {}


async def test_a_burst_of_5_pushes_to_8_repositories_prunes_each_at_most_twice(
    receiver: Receiver,
) -> None:
    repositories = [f"burst/repo-{i}" for i in range(8)]
    kept = {name: set(seed(receiver.backend, name, 4)[-KEEP:]) for name in repositories}
    bodies = [
        receiver.event("push", name, event_id=f"{name}-{n}")
        for n in range(5)
        for name in repositories
    ]
    answers = await asyncio.gather(*(receiver.send(body) for body in bodies))
    assert all(status == 202 for status, _ in answers)

    def all_pruned() -> bool:
        return all(receiver.backend.digests(name) == kept[name] for name in repositories)

    await until(all_pruned, within=10)
    await until(lambda: not receiver.client.app[RUNTIME].scheduler.running)
    assert set(receiver.pruner.prunes) == set(repositories)
    assert max(receiver.pruner.prunes.values()) <= 2, receiver.pruner.prunes


async def test_prune_with_wait_and_dry_run_behaves_as_documented(receiver: Receiver) -> None:
    digests = seed(receiver.backend, "manual")
    headers = {"X-Api-Key": TOKEN}
    dry = {"repositories": ["manual"], "dry_run": True, "wait": True}
    async with receiver.client.post("/prune", json=dry, headers=headers) as response:
        assert response.status == 200
        report = await response.json()
    assert report["dry_run"] is True
    [repo] = report["repositories"]
    assert {i["digest"] for i in repo["expire"]} == set(digests[:-KEEP])
    assert repo["deleted"] == [] and receiver.backend.digests("manual") == set(digests)

    real = {"repositories": ["manual"], "wait": True}
    async with receiver.client.post("/prune", json=real, headers=headers) as response:
        assert response.status == 200
        report = await response.json()
    assert sorted(report["repositories"][0]["deleted"]) == sorted(digests[:-KEEP])
    assert receiver.backend.digests("manual") == set(digests[-KEEP:])


async def test_prune_without_wait_is_a_job_and_plan_reads_one_repository(
    receiver: Receiver,
) -> None:
    digests = seed(receiver.backend, "team/api")
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with receiver.client.get("/repositories/team/api/plan", headers=headers) as response:
        assert response.status == 200
        plan = await response.json()
    assert len(plan["repositories"][0]["expire"]) == len(digests) - KEEP
    assert receiver.backend.digests("team/api") == set(digests)

    async with receiver.client.post("/prune", json={}, headers=headers) as response:
        assert response.status == 202
        job = await response.json()
    location = response.headers["Location"]

    async def state() -> dict[str, Any]:
        async with receiver.client.get(location, headers=headers) as answer:
            result: dict[str, Any] = await answer.json()
            return result

    async with asyncio.timeout(5):
        while job["state"] != "done":
            await asyncio.sleep(0.05)
            job = await state()
    assert [r["repository"] for r in job["report"]["repositories"]] == ["team/api"]
    assert receiver.backend.digests("team/api") == set(digests[-KEEP:])


# --- the process: run_serve, signals, configuration errors --------------------------------


def serve_args(*argv: str) -> Settings:
    return parse_args(["serve", *argv])


async def run_serve(settings: Settings, on_started: Callable[[str], None] | None = None) -> int:
    return await serve(settings, on_started=on_started)


@pytest.fixture
def policy_path(tmp_path: Path) -> str:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(POLICY_DOC))
    return str(path)


async def test_sigterm_during_a_prune_finishes_it_and_exits_0(
    policy_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLEANER_TOKEN", TOKEN)
    store = RegistryStore()
    async with running(store, latency_ms=300) as url:
        digests = seed(EmulatorBackend(store, url), "slow", 6)
        args = serve_args(
            *("--policy", policy_path, "--host", "127.0.0.1", "--port", "0"),
            *("--endpoint-url", url, "--region", REGION, "--debounce", "0.05"),
            *("--log-format", "text"),
        )
        started: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        server = asyncio.create_task(run_serve(args, started.set_result))
        base = await started
        async with ClientSession(base, headers={"X-Api-Key": TOKEN}) as http:
            push = json.loads((SAMPLES / "push.json").read_text())
            push["detail"]["repository-name"] = "slow"
            push["region"] = REGION
            async with http.post("/events", json=push) as response:
                assert response.status == 202
            await until(lambda: store.calls["DescribeImages"] > 0)
            assert store.calls["BatchDeleteImage"] == 0
            os.kill(os.getpid(), signal.SIGTERM)  # mid-prune: listed, not yet deleted
            await asyncio.sleep(0.05)
            async with http.get("/readyz") as response:
                assert response.status == 503
            async with http.post("/events", json=push | {"id": "later"}) as response:
                assert response.status == 503 and response.headers["Retry-After"]
            assert await asyncio.wait_for(server, timeout=10) == 0
    assert set(store.digests("slow")) == set(digests[-KEEP:])


async def test_a_bad_policy_is_a_config_error_before_any_connection(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"rules": [{"rulePriority": 1}]}')
    args = serve_args("--policy", str(bad), "--endpoint-url", "http://127.0.0.1:9")
    with pytest.raises(ConfigError):
        await run_serve(args)


@pytest.mark.parametrize("token_file", [None, "empty"])
async def test_no_token_refuses_to_start(
    policy_path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, token_file: str | None
) -> None:
    monkeypatch.delenv("CLEANER_TOKEN", raising=False)
    argv = ["--policy", policy_path, "--endpoint-url", "http://127.0.0.1:9"]
    if token_file:
        (tmp_path / token_file).write_text("\n")
        argv += ["--token-file", str(tmp_path / token_file)]
    with pytest.raises(ConfigError, match="CLEANER_TOKEN or --token-file"):
        await run_serve(serve_args(*argv))


async def test_insecure_no_auth_starts_without_a_token_and_a_token_file_works(
    policy_path: str, tmp_path: Path, emulator: EmulatorBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CLEANER_TOKEN", raising=False)
    (tmp_path / "token").write_text("from-a-file\n")
    for extra, headers, expected in [
        (["--insecure-no-auth"], {}, 202),
        (["--token-file", str(tmp_path / "token")], {}, 401),
        (["--token-file", str(tmp_path / "token")], {"X-Api-Key": "from-a-file"}, 202),
    ]:
        args = serve_args(
            *("--policy", policy_path, "--host", "127.0.0.1", "--port", "0"),
            *("--endpoint-url", emulator.endpoint_url, "--region", SAMPLE_REGION),
            *("--log-format", "text", *extra),
        )
        started: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        server = asyncio.create_task(run_serve(args, started.set_result))
        async with ClientSession(await started) as http:
            body = (SAMPLES / "push.json").read_bytes()
            async with http.post("/events", data=body, headers=headers) as response:
                status = response.status
        os.kill(os.getpid(), signal.SIGINT)
        assert await asyncio.wait_for(server, timeout=10) == 0
        assert status == expected, extra


async def test_a_port_in_use_is_a_config_error(
    policy_path: str, emulator: EmulatorBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLEANER_TOKEN", TOKEN)
    port = emulator.endpoint_url.rsplit(":", 1)[1]
    args = serve_args(
        *("--policy", policy_path, "--host", "127.0.0.1", "--port", port),
        *("--endpoint-url", emulator.endpoint_url),
    )
    with pytest.raises(ConfigError, match="cannot listen"):
        await run_serve(args)


async def test_the_process_logs_json_and_exits_0_on_sigterm(
    policy_path: str, emulator: EmulatorBackend
) -> None:
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "cleaner", "serve", "--policy", policy_path, "--insecure-no-auth"),
        *("--host", "127.0.0.1", "--port", "0", "--endpoint-url", emulator.endpoint_url),
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    logs: list[dict[str, Any]] = []
    async with asyncio.timeout(30):
        while not any("url" in line for line in logs):
            logs.append(json.loads(await process.stderr.readline()))
        async with ClientSession(logs[-1]["url"]) as http, http.get("/readyz") as response:
            assert response.status == 200
        process.send_signal(signal.SIGTERM)
        rest = await process.stderr.read()
        assert await process.wait() == 0
    logs += [json.loads(line) for line in rest.decode().splitlines()]
    messages = [line["message"] for line in logs]
    assert "SIGTERM: draining" in messages and messages[-1] == "stopped"
    assert logs[0]["level"] == "WARNING" and "AUTH DISABLED" in logs[0]["message"]
