"""Hostile input to the push receiver.

The real app on a real socket, with the real engine behind it, over HTTP against the
emulator, whose store counts every BatchDeleteImage. Hypothesis throws random bytes, random
JSON, near-miss EventBridge events, odd headers and wrong or missing tokens at it; explicit
cases cover huge and deep bodies, broken encodings, malformed HTTP and slow clients.

Properties: never a 5xx; never a traceback or exception text in an answer; errors are JSON
objects `{"error": ...}`; 401 for anything without the token but the four public paths; a
request that is refused (401, 4xx) submits no prune and deletes nothing; the token appears in
no answer and no log record.

What aiohttp bounds by itself (checked below): the request line and each header at 8190
bytes and at most 128 headers (`max_line_size`, `max_field_size`, `max_headers`: 400), the
body at `client_max_size` (the app sets 256 KiB: 413, also after decompression). How long a
body may take to arrive, aiohttp does not bound: the app must (`BODY_TIMEOUT_S`, 408).
"""

from __future__ import annotations

import asyncio
import copy
import gzip
import itertools
import json
import logging
import re
import zlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from yarl import URL

from cleaner.emulator import RegistryStore, make_manifest, running
from cleaner.engine import Engine
from cleaner.planning.model import RunReport
from cleaner.receiver import http as receiver_app
from cleaner.receiver.auth import TokenAuth
from cleaner.receiver.http import MAX_BODY, PUBLIC_PATHS, RUNTIME, Deps, make_app
from cleaner.receiver.pruner import EnginePruner
from cleaner.receiver.scheduler import Pruner, SchedulerSettings
from cleaner.registries.ecr import EcrRegistry
from tests.support.backends import REGION
from tests.support.fakes import settle, until
from tests.support.policies import keep_newest_everywhere
from tests.support.receiver import ReceiverTestServer

TOKEN = "fuzz-7f3c9a1e5b2d4c6f8a0b1c2d3e4f5a6b"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
SAMPLES = Path(__file__).parent / "data" / "events"
REPOSITORY = "app"
OLD_IMAGES = 4
POLICY = keep_newest_everywhere(1)
# What an answer must never show: a traceback, a source line, an exception's repr.
EXCEPTION_TEXT = re.compile(
    r"Traceback \(most recent call last\)|File \"[^\"]*\", line \d+|\b\w+(Error|Exception)\("
)
FUZZ = settings(
    max_examples=200,
    deadline=None,
    # One server for all examples on purpose: it is what a hostile client meets.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@dataclass
class CountingPruner:
    """The real EnginePruner, counting every prune it is asked for."""

    inner: Pruner
    calls: list[tuple[tuple[str, ...], bool]] = field(default_factory=list)

    async def prune(self, repositories: tuple[str, ...], *, dry_run: bool) -> RunReport:
        self.calls.append((repositories, dry_run))
        return await self.inner.prune(repositories, dry_run=dry_run)


@dataclass
class Stack:
    client: TestClient[web.Request, web.Application]
    store: RegistryStore
    pruner: CountingPruner
    seeds: Iterator[int] = field(default_factory=itertools.count)

    @property
    def deletes(self) -> int:
        return self.store.calls["BatchDeleteImage"]

    @property
    def port(self) -> int:
        port = self.client.port
        assert port is not None
        return port

    async def settle(self) -> None:
        await settle(self.client.app[RUNTIME].scheduler)

    def restock(self) -> None:
        """Old images again, so a prune that should not have run would delete something."""
        now = datetime.now(UTC)
        while len(self.store.digests(REPOSITORY)) < OLD_IMAGES:
            seed = f"old-{next(self.seeds)}"
            self.store.put_image(REPOSITORY, make_manifest(seed), pushed_at=now - timedelta(30))


@pytest.fixture
async def stack(aiohttp_client: Any) -> AsyncIterator[Stack]:
    store = RegistryStore()
    store.create_repository(REPOSITORY)
    async with (
        running(store) as url,
        EcrRegistry.connect(region=REGION, endpoint_url=url) as registry,
    ):
        pruner = CountingPruner(EnginePruner(Engine(registry), POLICY))
        deps = Deps(
            pruner=pruner,
            auth=TokenAuth(TOKEN),
            schedule=SchedulerSettings(debounce_s=0.01, retry_after_s=9),
            drain_timeout_s=5,
        )
        client: TestClient[web.Request, web.Application] = await aiohttp_client(
            ReceiverTestServer(make_app(deps))
        )
        result = Stack(client, store, pruner)
        result.restock()
        try:
            yield result
        finally:
            await client.close()  # drains the app while the registry client is still open


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    content_type: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def send(
    stack: Stack,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Answer:
    async with stack.client.request(method, path, data=body, headers=headers) as response:
        return Answer(
            response.status, response.content_type, dict(response.headers), await response.read()
        )


def routed_path(path: str) -> str:
    """The path the server routes: the client resolves `..` and `%2e%2e` segments first, so
    `/healthz/../prune` is a POST to /prune."""
    return URL(f"http://receiver{path}").path


def assert_safe(answer: Answer, method: str = "POST") -> None:
    """No 5xx, no exception text, no token; an error is a JSON object with an `error`."""
    text = answer.body.decode("utf-8", "replace")
    assert answer.status < 500, text
    assert not EXCEPTION_TEXT.search(text), text
    assert TOKEN not in text and TOKEN not in json.dumps(answer.headers)
    if answer.status >= 400 and method != "HEAD":
        assert answer.content_type == "application/json", (answer.status, text)
        error = answer.json()
        assert isinstance(error, dict) and isinstance(error.get("error"), str), text


# --- strategies ----------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=16,
)


def push_sample() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((SAMPLES / "push.json").read_text())
    doc["detail"]["repository-name"] = REPOSITORY
    return doc


@st.composite
def near_events(draw: st.DrawFn) -> bytes:
    """The push sample under a new id, with up to three fields replaced, removed or added."""
    doc = copy.deepcopy(push_sample()) | {"id": str(draw(st.uuids()))}
    for _ in range(draw(st.integers(0, 3))):
        detail = doc.get("detail")
        target = detail if isinstance(detail, dict) and draw(st.booleans()) else doc
        key = draw(st.sampled_from(sorted(target)) | st.text(max_size=8)) if target else "x"
        if draw(st.booleans()):
            target.pop(key, None)
        else:
            target[key] = draw(json_values)
    return json.dumps(doc).encode()


bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda value: json.dumps(value).encode()),
    near_events(),
)
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
CONTENT_TYPES = (
    "application/json",
    "application/json; charset=utf-8",
    "application/json; charset=latin-1",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=zz",
    "application/octet-stream",
    "",
)
HEADER_NAMES = (
    "Accept", "Accept-Encoding", "Connection", "Expect", "User-Agent", "Range", "Cookie",
    "X-Forwarded-For", "Origin", "X-Amz-Target", "Forwarded", "Accept-Charset",
)  # fmt: skip


def _odd(headers: dict[str, str]) -> dict[str, str]:
    """No credentials here (the tests add their own); `Expect` only as clients send it:
    aiohttp answers any other expectation with 417 before the app runs (see below)."""
    odd = {k: v for k, v in headers.items() if k.lower() not in ("authorization", "x-api-key")}
    return odd | {"Expect": "100-continue"} if "Expect" in odd else odd


odd_headers = st.dictionaries(
    st.sampled_from(HEADER_NAMES) | st.from_regex(r"X-[A-Za-z0-9-]{1,12}", fullmatch=True),
    header_text,
    max_size=4,
).map(_odd)
wrong_credentials: st.SearchStrategy[dict[str, str]] = st.one_of(
    st.just({}),
    header_text.map(lambda v: {"Authorization": v}),
    header_text.map(lambda v: {"X-Api-Key": v}),
    header_text.map(lambda v: {"Authorization": f"Bearer {v}"}),
    st.sampled_from(
        [
            {"X-Api-Key": TOKEN[:-1]},
            {"X-Api-Key": TOKEN + "x"},
            {"X-Api-Key": TOKEN.upper()},
            {"Authorization": f"Basic {TOKEN}"},
            {"Authorization": f"Token {TOKEN}"},
            {"Authorization": TOKEN},
            {"Authorization": f"Bearer {TOKEN} {TOKEN}"},
            {"Authorization": f"Bearer {TOKEN[:16]}"},
            {"X-Api-Key": "", "Authorization": "Bearer "},
            {"X-Token": TOKEN, "Api-Key": TOKEN},
        ]
    ),
)
paths = st.one_of(
    st.sampled_from(
        [
            "/events", "/prune", "/jobs/x", "/repositories/app/plan", "/repositories/a/b/plan",
            "/nope", "/events/", "/EVENTS", "/prune?wait=true", "/healthz/../prune",
            "/healthz", "/readyz", "/metrics", "/openapi.json", "/healthz/", "/", "/admin",
        ]
    ),
    st.text("abcdefghijklmnopqrstuvwxyz0123456789-._~/", max_size=30).map(lambda p: "/" + p),
).filter(lambda p: not URL(p).absolute)  # "//x" would name a host  # fmt: skip
methods = st.sampled_from(("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"))


# --- the token -----------------------------------------------------------------------------


async def test_a_valid_prune_does_delete(stack: Stack) -> None:
    """The control for every "deletes nothing" below: the set-up can delete."""
    answer = await send(stack, "POST", "/prune", b'{"wait": true}', BEARER)
    assert answer.status == 200, answer.body
    assert stack.deletes >= 1
    assert len(stack.store.digests(REPOSITORY)) == 1


@FUZZ
@given(method=methods, path=paths, credentials=wrong_credentials, extra=odd_headers, body=bodies)
async def test_without_the_token_only_the_public_paths_answer(
    stack: Stack,
    method: str,
    path: str,
    credentials: dict[str, str],
    extra: dict[str, str],
    body: bytes,
) -> None:
    answer = await send(stack, method, path, body, extra | credentials)
    assert_safe(answer, method)
    event(f"status {answer.status}")
    if routed_path(path) in PUBLIC_PATHS:
        assert answer.status == (200 if method == "GET" else 405)
    else:
        assert answer.status == 401, answer.body
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
        if method != "HEAD":
            assert answer.json() == {"error": "missing or wrong token"}
    await stack.settle()
    assert stack.pruner.calls == []
    assert stack.deletes == 0


# --- /events and /prune with the token -----------------------------------------------------


@FUZZ
@given(body=bodies, content_type=st.sampled_from(CONTENT_TYPES), extra=odd_headers)
async def test_events_answers_every_body_safely(
    stack: Stack, body: bytes, content_type: str, extra: dict[str, str]
) -> None:
    stack.restock()
    prunes, deletes = len(stack.pruner.calls), stack.deletes
    headers = extra | {"Content-Type": content_type} | BEARER
    answer = await send(stack, "POST", "/events", body, headers)
    assert_safe(answer)
    assert answer.status in (200, 202, 400), answer.body
    event(f"status {answer.status}")
    if answer.status != 400:
        assert answer.json()["status"] in ("accepted", "coalesced", "ignored", "duplicate")
    await stack.settle()
    if answer.status != 202:  # only an accepted push may prune
        assert len(stack.pruner.calls) == prunes
        assert stack.deletes == deletes


def _not_a_prune_request() -> st.SearchStrategy[bytes]:
    """Bodies POST /prune must refuse: never `{}`-like, always one thing wrong."""
    name = st.sampled_from(["app", "team/app"])
    bad_name = st.one_of(
        st.text(max_size=5).filter(lambda s: len(s) < 2), st.just("App"), st.just("-app"),
        st.just("a" * 257), st.just("app/"), st.just("a b"), st.integers(), st.none(),
    )  # fmt: skip
    bad_fields = st.one_of(
        st.builds(lambda k, v: {k: v}, st.text(min_size=1).filter(lambda k: k not in
                  ("repositories", "dry_run", "wait")), json_values),
        json_values.filter(lambda v: not isinstance(v, bool)).map(lambda v: {"dry_run": v}),
        json_values.filter(lambda v: not isinstance(v, bool)).map(lambda v: {"wait": v}),
        st.just({"repositories": []}),
        json_values.filter(lambda v: not isinstance(v, list)).map(lambda v: {"repositories": v}),
        st.lists(name, max_size=3).flatmap(
            lambda good: bad_name.map(lambda bad: {"repositories": [*good, bad]})
        ),
        st.just({"repositories": [f"r{i:03d}" for i in range(101)]}),
    )  # fmt: skip
    objects = st.builds(
        lambda bad, extra: json.dumps(extra | bad).encode(),
        bad_fields,
        st.fixed_dictionaries({}, optional={"dry_run": st.booleans(), "wait": st.booleans()}),
    )
    not_objects = json_values.filter(lambda v: not isinstance(v, dict)).map(
        lambda v: json.dumps(v).encode()
    )
    not_json = st.binary(min_size=1, max_size=100).filter(_not_json)
    return st.one_of(objects, not_objects, not_json)


def _not_json(raw: bytes) -> bool:
    try:
        json.loads(raw)
    except ValueError:
        return bool(raw.strip())
    return False


@FUZZ
@given(body=_not_a_prune_request(), content_type=st.sampled_from(CONTENT_TYPES))
async def test_a_malformed_prune_is_400_and_deletes_nothing(
    stack: Stack, body: bytes, content_type: str
) -> None:
    answer = await send(stack, "POST", "/prune", body, {"Content-Type": content_type} | BEARER)
    assert_safe(answer)
    assert answer.status == 400, answer.body
    await stack.settle()
    assert stack.pruner.calls == []
    assert stack.deletes == 0


@FUZZ
@given(
    method=methods,
    path=st.one_of(
        st.text(max_size=20).map(lambda s: "/jobs/" + s.replace("/", "")),
        st.text(max_size=30).map(lambda s: f"/repositories/{s}/plan"),
        paths,
    ),
    body=bodies,
)
async def test_with_the_token_every_other_request_is_answered_safely(
    stack: Stack, method: str, path: str, body: bytes
) -> None:
    try:
        url = URL(path)
    except ValueError:
        return  # not a URL the client can send
    if url.absolute:
        return  # "//x..." names a host
    if routed_path(str(url)) in ("/events", "/prune"):
        return  # with the token, these may prune: the tests above cover them
    answer = await send(stack, method, str(url), body, BEARER)
    assert_safe(answer, method)
    event(f"status {answer.status}")
    await stack.settle()
    assert all(dry_run for _, dry_run in stack.pruner.calls)  # plans only, never a prune
    assert stack.deletes == 0


# --- huge, deep and strangely encoded bodies -------------------------------------------------


def _deep(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


HUGE_INTEGER = b'{"id": ' + b"7" * 5000 + b"}"
LARGE_BODIES = {
    "over the limit": (b" " * (MAX_BODY + 1), 413),
    "exactly the limit, not JSON": (b"x" * MAX_BODY, 400),
    "a deep array": (_deep(100_000), 400),
    "a deep object": (b'{"a":' * 40_000 + b"1" + b"}" * 40_000, 400),
    "a wide object": (json.dumps({str(i): i for i in range(15_000)}).encode(), 400),
    "a 5000-digit integer": (HUGE_INTEGER, 400),
    "a 400-digit float": (b'{"id": 1' + b"0" * 400 + b".5}", 400),
    "invalid UTF-8": (b'{"id": "\xff\xfe"}', 400),
    "a UTF-16 body": ('{"id": "x"}'.encode("utf-16"), 400),
    "a NUL byte": (b'{"id": "\x00"}', 400),
    "a lone surrogate escape": (b'{"id": "\\ud800", "source": 1}', 400),
}


@pytest.mark.parametrize("path", ["/events", "/prune"])
@pytest.mark.parametrize(("body", "status"), LARGE_BODIES.values(), ids=LARGE_BODIES.keys())
async def test_huge_and_deep_bodies_are_client_errors(
    stack: Stack, path: str, body: bytes, status: int
) -> None:
    answer = await send(stack, "POST", path, body, BEARER)
    assert_safe(answer)
    assert answer.status == status, answer.body
    await stack.settle()
    assert stack.pruner.calls == [] and stack.deletes == 0


async def _chunks(data: bytes, size: int = 65536) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.mark.parametrize("path", ["/events", "/prune"])
async def test_a_chunked_body_over_the_limit_is_413(stack: Stack, path: str) -> None:
    async with stack.client.post(path, data=_chunks(b" " * (2 * MAX_BODY)), headers=BEARER) as r:
        assert r.status == 413
        assert (await r.json())["error"].startswith("Maximum request body size")
    assert stack.pruner.calls == []


def _deflate(data: bytes) -> bytes:
    return zlib.compress(data)


# EventBridge never compresses, and the server inflates nothing (cleaner/receiver/runner.py):
# every encoded body is refused unread, whatever is inside.
ENCODED_BODIES = {
    "a gzip bomb": ("gzip", gzip.compress(b" " * (8 * 1024 * 1024)), 415),
    "a deflate bomb": ("deflate", _deflate(b"[" * (8 * 1024 * 1024)), 415),
    "gzip that is not gzip": ("gzip", b'{"repositories": ["app"]}', 415),
    "deflate that is not deflate": ("deflate", b"\x00\x01\x02\x03", 415),
    "a truncated gzip stream": ("gzip", gzip.compress(b'{"dry_run": true}')[:12], 415),
    "an encoding not installed": ("br", b"\x0b\x02\x80{}\x03", 415),
}


@pytest.mark.parametrize("path", ["/events", "/prune"])
@pytest.mark.parametrize(
    ("encoding", "body", "status"), ENCODED_BODIES.values(), ids=ENCODED_BODIES.keys()
)
async def test_bodies_in_a_broken_or_explosive_encoding_are_client_errors(
    stack: Stack, path: str, encoding: str, body: bytes, status: int
) -> None:
    answer = await send(stack, "POST", path, body, {"Content-Encoding": encoding} | BEARER)
    assert answer.status == status, answer.body
    if answer.content_type == "application/json":  # "br": aiohttp answers before the app
        assert_safe(answer)
    assert not EXCEPTION_TEXT.search(answer.body.decode("utf-8", "replace"))
    await stack.settle()
    assert stack.pruner.calls == [] and stack.deletes == 0


async def test_a_gzip_encoded_request_is_refused_and_an_identity_one_works(stack: Stack) -> None:
    body = b'{"repositories": ["app"], "dry_run": true, "wait": true}'
    answer = await send(
        stack, "POST", "/prune", gzip.compress(body), {"Content-Encoding": "gzip"} | BEARER
    )
    assert answer.status == 415 and "Content-Encoding" in answer.json()["error"]
    answer = await send(stack, "POST", "/prune", body, {"Content-Encoding": "identity"} | BEARER)
    assert answer.status == 200 and answer.json()["dry_run"] is True


@pytest.mark.parametrize("credentials", [BEARER, {}], ids=["with the token", "without"])
async def test_an_unknown_expectation_is_417_and_does_nothing(
    stack: Stack, credentials: dict[str, str]
) -> None:
    """aiohttp's default expect handler answers any Expect but 100-continue with a plain-text
    417 before the middlewares run, so also before authentication: nothing happens, but the
    answer is neither JSON nor 401 (RFC 9110 allows 417; EventBridge never sends Expect)."""
    answer = await send(stack, "POST", "/prune", b"{}", {"Expect": "yes-please"} | credentials)
    assert answer.status == 417
    assert not EXCEPTION_TEXT.search(answer.body.decode())
    await stack.settle()
    assert stack.pruner.calls == [] and stack.deletes == 0


# --- malformed HTTP on a raw socket --------------------------------------------------------


async def raw_exchange(port: int, data: bytes, wait: float = 5.0) -> bytes:
    """Send raw bytes, read until the server closes (or `wait` passes)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(wait):
            return await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()


def status_of(response: bytes) -> int:
    match = re.match(rb"HTTP/1\.[01] (\d{3}) ", response)
    assert match, response[:200]
    return int(match[1])


AUTH_LINE = f"Authorization: Bearer {TOKEN}\r\n".encode()
MALFORMED_HTTP = {
    "a 9000-byte header": b"X-Big: " + b"a" * 9000 + b"\r\n",
    "129 headers": b"".join(b"X-H%d: 1\r\n" % i for i in range(129)),
    "a 9000-byte header name": b"X-" + b"n" * 9000 + b": 1\r\n",
    "a header without a colon": b"Nonsense\r\n",
    "a NUL in a header": b"X-A: \x00\r\n",
    "Content-Length and Transfer-Encoding": b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n",
    "two Content-Lengths": b"Content-Length: 2\r\nContent-Length: 3\r\n",
    "a negative Content-Length": b"Content-Length: -1\r\n",
    "a Content-Length that is no number": b"Content-Length: 1e3\r\n",
}


@pytest.mark.parametrize("headers", MALFORMED_HTTP.values(), ids=MALFORMED_HTTP.keys())
async def test_malformed_headers_are_4xx(stack: Stack, headers: bytes) -> None:
    request = b"POST /events HTTP/1.1\r\nHost: x\r\n" + AUTH_LINE + headers + b"\r\n{}"
    response = await raw_exchange(stack.port, request)
    assert 400 <= status_of(response) < 500
    assert TOKEN.encode() not in response.partition(b"\r\n\r\n")[0]
    assert not EXCEPTION_TEXT.search(response.decode("latin-1"))
    assert stack.pruner.calls == []


MALFORMED_REQUESTS = {
    "a 9000-byte request line": b"GET /healthz?" + b"q" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    "no HTTP at all": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 a TLS hello\r\n\r\n",
    "an HTTP/2 preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "an unknown method": b"BREW /events HTTP/1.1\r\nHost: x\r\n\r\n",
    "a bad chunk size": b"POST /events HTTP/1.1\r\nHost: x\r\n" + AUTH_LINE
    + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n\r\n",
    "HTTP/9.9": b"GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n",
}  # fmt: skip


@pytest.mark.parametrize(
    "request_bytes", MALFORMED_REQUESTS.values(), ids=MALFORMED_REQUESTS.keys()
)
async def test_malformed_requests_are_4xx(stack: Stack, request_bytes: bytes) -> None:
    response = await raw_exchange(stack.port, request_bytes)
    assert 400 <= status_of(response) < 500, response[:300]
    assert not EXCEPTION_TEXT.search(response.decode("latin-1"))
    assert stack.pruner.calls == []


# --- slow clients --------------------------------------------------------------------------


async def _dribble(port: int, path: str = "/events") -> tuple[asyncio.StreamReader, Any]:
    """A client that announces 1000 bytes, sends 10, and then nothing."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: x\r\n".encode()
        + AUTH_LINE
        + b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
        + b'{"id": "x"'
    )
    await writer.drain()
    return reader, writer


async def test_a_stalled_body_does_not_stall_anyone_else(stack: Stack) -> None:
    server = stack.client.server.handler

    def connections() -> int:
        return len(server.connections)

    await send(stack, "GET", "/healthz")
    before = connections()
    stalled = [await _dribble(stack.port) for _ in range(20)]
    try:
        await until(lambda: connections() == before + 20)
        started = asyncio.get_running_loop().time()
        answer = await send(stack, "GET", "/healthz")
        assert answer.status == 200
        answer = await send(stack, "POST", "/prune", b'{"dry_run": true, "wait": true}', BEARER)
        assert answer.status == 200
        assert asyncio.get_running_loop().time() - started < 2
    finally:
        for _, writer in stalled:
            writer.close()
            await writer.wait_closed()
    # A client that gives up frees its connection and its handler.
    await until(lambda: connections() <= before)
    assert stack.pruner.calls == [((), True)]


async def test_a_stalled_body_gets_408_after_the_body_timeout(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that sends its headers and then dribbles the body cannot hold a handler:
    the body must arrive within `BODY_TIMEOUT_S`."""
    monkeypatch.setattr(receiver_app, "BODY_TIMEOUT_S", 0.3)
    for path in ("/events", "/prune"):
        reader, writer = await _dribble(stack.port, path)
        try:
            async with asyncio.timeout(5):
                head = await reader.readuntil(b"\r\n\r\n")
                length = re.search(rb"(?i)content-length: (\d+)", head)
                assert length, head
                body = await reader.readexactly(int(length[1]))
        finally:
            writer.close()
            await writer.wait_closed()
        assert status_of(head) == 408, head
        assert isinstance(json.loads(body)["error"], str)
    assert stack.pruner.calls == []


# --- the token never leaks -----------------------------------------------------------------


async def test_the_token_is_in_no_answer_and_no_log_record(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    event = json.dumps(push_sample()).encode()
    near_misses = [
        {"X-Api-Key": TOKEN + "x"},
        {"X-Api-Key": TOKEN[:-1]},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": f"Bearer {TOKEN} extra"},
    ]
    answers = [
        await send(stack, "POST", "/events", event, BEARER),
        await send(stack, "POST", "/events", event, {"X-Api-Key": TOKEN}),
        await send(stack, "POST", "/events", b"{", BEARER),
        await send(stack, "POST", "/events", b" " * (MAX_BODY + 1), BEARER),
        await send(stack, "POST", "/prune", b'{"wait": true}', BEARER),
        await send(stack, "POST", "/prune", b'{"bad": 1}', BEARER),
        await send(stack, "GET", "/repositories/app/plan", None, BEARER),
        await send(stack, "GET", "/jobs/none", None, BEARER),
        *[await send(stack, "POST", "/prune", b"{}", headers) for headers in near_misses],
        await send(stack, "GET", "/metrics"),
    ]
    await stack.settle()
    for answer in answers:
        assert TOKEN not in answer.body.decode("utf-8", "replace")
    assert [a.status for a in answers[-5:-1]] == [401] * 4
    assert TOKEN not in caplog.text
    assert all(TOKEN not in str(record.__dict__) for record in caplog.records)


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(AUTH_LINE.replace(b"\r\n", b"\x00\r\n"), id="a NUL after the token"),
        pytest.param(f"X-Api-Key: {TOKEN}{'a' * 9000}\r\n".encode(), id="a token too long"),
    ],
)
async def test_a_malformed_header_carrying_the_token_is_not_logged(
    stack: Stack, caplog: pytest.LogCaptureFixture, header: bytes
) -> None:
    """aiohttp logs a malformed request with the offending raw bytes (and a traceback), so a
    client that sends the right token in a broken header would put it in the logs."""
    caplog.set_level(logging.DEBUG)
    request = b"POST /events HTTP/1.1\r\nHost: x\r\n" + header + b"Content-Length: 2\r\n\r\n{}"
    response = await raw_exchange(stack.port, request)
    assert status_of(response) == 400
    assert TOKEN not in caplog.text
