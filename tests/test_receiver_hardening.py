"""The receiver before a rollout: strangers cost nothing, the token is never shown, and work
it accepted is not lost to a registry that was briefly down.

Every test runs the production runner (`cleaner.receiver.runner.ReceiverRunner`) on a real
socket: the defences sit below the application, where aiohttp parses and logs requests.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import statistics
import time
from collections.abc import AsyncIterator
from functools import cache
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from cleaner.errors import RegistryError
from cleaner.receiver.auth import TokenAuth
from cleaner.receiver.health import CachedCheck
from cleaner.receiver.http import Deps, make_app
from cleaner.receiver.scheduler import SchedulerSettings
from tests.support.fakes import FakePruner, until
from tests.support.receiver import ReceiverTestServer

TOKEN = "tok-0123456789abcdef"
SAMPLES = Path(__file__).parent / "data" / "events"
Client = TestClient[web.Request, web.Application]


def push(repository: str = "app", event_id: str = "evt-1") -> bytes:
    doc = json.loads((SAMPLES / "push.json").read_text())
    doc["detail"]["repository-name"] = repository
    return json.dumps(doc | {"id": event_id}).encode()


@pytest.fixture
def pruner() -> FakePruner:
    return FakePruner()


async def start(aiohttp_client: Any, pruner: FakePruner, **deps: Any) -> Client:
    schedule = SchedulerSettings(debounce_s=0.01, retry_base_s=0.05)
    app = make_app(Deps(pruner=pruner, auth=TokenAuth(TOKEN), schedule=schedule, **deps))
    client: Client = await aiohttp_client(ReceiverTestServer(app))
    return client


@pytest.fixture
async def client(aiohttp_client: Any, pruner: FakePruner) -> AsyncIterator[Client]:
    yield await start(aiohttp_client, pruner)


async def raw(port: int, request: bytes) -> bytes:
    """One request over a plain socket, as written: no client library tidies it up."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(10):
            return await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()


# --- the token is never shown ------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        f"X-Api-Key: {TOKEN}\x00".encode(),
        f"X-Api-Key: {TOKEN}\rX".encode(),
        f"Authorization: Bearer {TOKEN}\x7f".encode(),
    ],
    ids=["a NUL after the key", "a bare CR", "a DEL in the bearer line"],
)
async def test_a_malformed_header_line_is_answered_without_quoting_it(
    client: Client, header: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    assert client.port is not None
    answer = await raw(
        client.port,
        b"POST /events HTTP/1.1\r\nHost: x\r\n" + header + b"\r\nContent-Length: 2\r\n\r\n{}",
    )
    assert answer.startswith(b"HTTP/1.1 400") or answer.startswith(b"HTTP/1.0 400"), answer
    assert TOKEN.encode() not in answer
    assert TOKEN not in caplog.text


@pytest.mark.parametrize("name", ["token", "api_key", "X-Api-Key", "access_token"])
async def test_a_token_in_the_query_string_never_reaches_the_access_log(
    client: Client, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    for method, path in (("GET", "/healthz"), ("POST", "/events")):
        async with client.request(method, f"{path}?{name}={TOKEN}", data=b"{}") as answer:
            body = await answer.read()
        assert TOKEN.encode() not in body
    lines = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert len(lines) == 2 and '"GET /healthz"' in lines[0] and '"POST /events"' in lines[1]
    assert TOKEN not in caplog.text


# --- bodies that cost nothing until the token is checked ----------------------------------


@cache
def inflating_body() -> bytes:
    """250 MiB of zeros in about 250 KB of gzip: the body of an unauthenticated client."""
    return gzip.compress(bytes(250 * 1024 * 1024), compresslevel=9)


async def test_unauthenticated_gzip_bodies_leave_healthz_fast(client: Client) -> None:
    body = inflating_body()
    assert len(body) < 300 * 1024
    stop = asyncio.Event()
    answered: list[int] = []

    async def stranger() -> None:
        async with aiohttp.ClientSession(str(client.make_url(""))) as session:
            while not stop.is_set():
                headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
                async with session.post("/events", data=body, headers=headers) as answer:
                    answered.append(answer.status)

    strangers = [asyncio.create_task(stranger()) for _ in range(4)]
    try:
        await until(lambda: len(answered) >= 8, within=30)
        latencies = []
        for _ in range(20):
            started = time.perf_counter()
            async with client.get("/healthz") as answer:
                assert answer.status == 200
            latencies.append(time.perf_counter() - started)
    finally:
        stop.set()
        await asyncio.gather(*strangers)
    assert set(answered) == {401}
    assert statistics.median(latencies) < 0.25, latencies


async def test_a_compressed_body_with_the_token_is_refused_unread(client: Client) -> None:
    headers = {"Content-Encoding": "gzip", "X-Api-Key": TOKEN}
    async with client.post("/events", data=inflating_body(), headers=headers) as answer:
        assert answer.status == 415
        assert "Content-Encoding" in (await answer.json())["error"]


# --- what an event may hold -----------------------------------------------------------------


async def test_an_event_id_of_200_kb_is_a_400(client: Client, pruner: FakePruner) -> None:
    async with client.post("/events", data=push(event_id="x" * 200_000),
                           headers={"X-Api-Key": TOKEN}) as answer:  # fmt: skip
        assert answer.status == 400
        assert "id is longer than 128" in (await answer.json())["error"]
    assert pruner.calls == []


async def test_a_push_no_policy_entry_matches_is_ignored(
    aiohttp_client: Any, pruner: FakePruner
) -> None:
    client = await start(aiohttp_client, pruner, covers=lambda name: name.startswith("team/"))
    async with client.post("/events", data=push("other/app"), headers={"X-Api-Key": TOKEN}) as a:
        assert a.status == 200
        answer = await a.json()
    assert answer["status"] == "ignored" and "no policy entry matches" in answer["reason"]
    async with client.post("/events", data=push("team/app", "evt-2"),
                           headers={"X-Api-Key": TOKEN}) as a:  # fmt: skip
        assert a.status == 202
    await until(lambda: pruner.finished == [("team/app",)])


# --- accepted work survives a registry that is briefly down ---------------------------------


async def test_an_accepted_prune_that_fails_is_retried_and_counted(
    client: Client, pruner: FakePruner
) -> None:
    pruner.fail = True
    async with client.post("/events", data=push(), headers={"X-Api-Key": TOKEN}) as answer:
        assert answer.status == 202
    await until(lambda: len(pruner.calls) >= 2)  # the first try, then a retry
    pruner.fail = False
    await until(lambda: pruner.finished == [("app",)])
    async with client.get("/metrics") as answer:
        text = await answer.text()
    (retries,) = [
        line for line in text.splitlines() if line.startswith("ecr_cleaner_prune_retries_total")
    ]
    assert float(retries.split()[-1]) >= 1


async def test_readyz_follows_the_registry_and_caches_its_answer(
    aiohttp_client: Any, pruner: FakePruner
) -> None:
    calls: list[float] = []
    down = True

    async def ping() -> None:
        calls.append(time.monotonic())
        if down:
            raise RegistryError("DescribeRepositories: Could not connect to the endpoint URL")

    check = CachedCheck("registry", ping, ttl_s=0.2)
    client = await start(aiohttp_client, pruner, readiness=(check,))
    for _ in range(5):
        async with client.get("/readyz") as answer:
            assert answer.status == 503
            body = await answer.json()
    assert body["status"] == "not ready" and "Could not connect" in body["reasons"][0]
    assert len(calls) == 1  # five probes, one registry call
    down = False
    await asyncio.sleep(0.25)
    async with client.get("/readyz") as answer:
        assert answer.status == 200 and (await answer.json()) == {"status": "ready"}


async def test_a_registry_that_does_not_answer_is_a_reason_not_an_exception() -> None:
    async def hang() -> None:
        await asyncio.sleep(30)

    check = CachedCheck("registry", hang, timeout_s=0.05)
    assert await check() == "registry: no answer within 0.05 s"
