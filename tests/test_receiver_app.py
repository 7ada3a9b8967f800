"""The HTTP layer over real sockets with a fake pruner: auth, sizes, answers, metrics, OpenAPI.

Every JSON answer is checked against /openapi.json, so the document cannot drift from the app.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import jsonschema  # type: ignore[import-untyped]
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from openapi_spec_validator import validate as validate_spec

from cleaner.logs import JsonFormatter, use_log_format
from cleaner.planning.model import (
    Decision,
    ErrorKind,
    Image,
    Plan,
    RepositoryReport,
    RunReport,
    Verdict,
)
from cleaner.receiver.auth import TokenAuth
from cleaner.receiver.events import Scope
from cleaner.receiver.http import MAX_BODY, RUNTIME, Deps, drain, make_app
from cleaner.receiver.metrics import Metrics
from cleaner.receiver.openapi import openapi_document
from cleaner.receiver.scheduler import SchedulerSettings
from cleaner.reports.json import report_to_json
from tests.support.fakes import FakePruner, until
from tests.support.fakes import settle as settle_scheduler

TOKEN = "s3cret-token-value"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
SAMPLES = Path(__file__).parent / "data" / "events"
SPEC = openapi_document()
IN_USE = ErrorKind.IN_USE
ClientFactory = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]


def push_event(repository: str = "app", event_id: str = "id-1", **envelope: Any) -> bytes:
    doc = json.loads((SAMPLES / "push.json").read_text())
    doc["detail"]["repository-name"] = repository
    return json.dumps(doc | {"id": event_id} | envelope).encode()


@pytest.fixture
def pruner() -> FakePruner:
    return FakePruner()


@pytest.fixture
def client_for(aiohttp_client: Any, pruner: FakePruner) -> ClientFactory:
    async def build(
        token: str | None = TOKEN, scope: Scope | None = None, **schedule: Any
    ) -> TestClient[web.Request, web.Application]:
        deps = Deps(
            pruner=pruner,
            auth=TokenAuth(token),
            scope=scope or Scope(),
            schedule=SchedulerSettings(**({"debounce_s": 0.02, "retry_after_s": 9} | schedule)),
            drain_timeout_s=2,
        )
        client: TestClient[web.Request, web.Application] = await aiohttp_client(make_app(deps))
        return client

    return build


@pytest.fixture
async def client(client_for: ClientFactory) -> TestClient[web.Request, web.Application]:
    return await client_for()


def _spec_path(path: str) -> str:
    for template in SPEC["paths"]:
        pattern = re.sub(r"\\\{[^}]+\\\}", r"[\\s\\S]+", re.escape(template))
        if re.fullmatch(pattern, unquote(path)):
            return str(template)
    raise AssertionError(f"{path} is not in /openapi.json")


async def call(
    client: TestClient[web.Request, web.Application],
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any, Any]:
    """One request; its status and JSON body must be what /openapi.json documents."""
    async with client.request(method, path, data=body, headers=headers) as response:
        payload = await response.json() if response.content_type == "application/json" else None
        status, answer_headers, content_type = (
            response.status,
            response.headers,
            response.content_type,
        )
    operation = SPEC["paths"][_spec_path(path)][method.lower()]
    documented = operation["responses"].get(str(status))
    assert documented, f"{method} {path} answered {status}, not documented"
    assert content_type in documented["content"], f"{status} answered {content_type}"
    if content_type == "application/json":
        schema = documented["content"][content_type]["schema"]
        jsonschema.validate(payload, schema | {"components": SPEC["components"]})
    for header in documented.get("headers", {}):
        assert header in answer_headers, f"{status} lacks {header}"
    return status, payload, answer_headers


async def settle(client: TestClient[web.Request, web.Application]) -> None:
    await settle_scheduler(client.app[RUNTIME].scheduler)


# --- auth --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        BEARER,
        {"Authorization": f"bearer {TOKEN}"},
        {"X-Api-Key": TOKEN},
        {"x-api-key": TOKEN},
        {"Authorization": "Bearer wrong", "X-Api-Key": TOKEN},
    ],
)
async def test_either_header_with_the_token_is_accepted(
    client: TestClient[web.Request, web.Application], pruner: FakePruner, headers: dict[str, str]
) -> None:
    status, answer, _ = await call(client, "POST", "/events", push_event(), headers)
    assert (status, answer["status"]) == (202, "accepted")
    await settle(client)
    assert pruner.per_repository() == {"app": 1}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
        {"Authorization": "Bearer "},
        {"X-Api-Key": ""},
        {"X-Api-Key": TOKEN + "x"},
        {"X-Api-Key": TOKEN[:-1]},
    ],
)
async def test_anything_but_the_token_is_401_and_does_nothing(
    client: TestClient[web.Request, web.Application], pruner: FakePruner, headers: dict[str, str]
) -> None:
    for method, path, body in [
        ("POST", "/events", push_event()),
        ("POST", "/prune", b'{"wait": true}'),
        ("GET", "/jobs/anything", None),
        ("GET", "/repositories/app/plan", None),
    ]:
        status, answer, answer_headers = await call(client, method, path, body, headers)
        assert status == 401 and answer == {"error": "missing or wrong token"}
        assert answer_headers["WWW-Authenticate"].startswith("Bearer")
    await settle(client)
    assert pruner.calls == []


async def test_probes_metrics_and_the_api_description_need_no_token(
    client: TestClient[web.Request, web.Application],
) -> None:
    assert (await call(client, "GET", "/healthz"))[:2] == (200, {"status": "ok"})
    assert (await call(client, "GET", "/readyz"))[:2] == (200, {"status": "ready"})
    assert (await call(client, "GET", "/metrics"))[0] == 200
    assert (await call(client, "GET", "/openapi.json"))[0] == 200


async def test_without_a_token_configured_everything_is_open(
    client_for: ClientFactory,
) -> None:
    client = await client_for(token=None)
    assert (await call(client, "POST", "/events", push_event()))[0] == 202


async def test_the_token_is_never_logged(
    client: TestClient[web.Request, web.Application], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await call(client, "POST", "/events", push_event(), BEARER)
    await call(client, "POST", "/events", b"{", {"X-Api-Key": TOKEN})
    await call(client, "POST", "/prune", b'{"wait": true}', BEARER)
    await settle(client)
    assert TOKEN not in caplog.text
    assert TOKEN not in repr(client.app)


# --- events ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["delete", "scan", "archive", "replication"])
async def test_other_ecr_events_are_acknowledged_and_ignored(
    client: TestClient[web.Request, web.Application], pruner: FakePruner, name: str
) -> None:
    status, answer, _ = await call(
        client, "POST", "/events", (SAMPLES / f"{name}.json").read_bytes(), BEARER
    )
    assert (status, answer["status"]) == (200, "ignored") and answer["reason"]
    await settle(client)
    assert pruner.calls == []


async def test_a_redelivered_event_is_a_duplicate(
    client: TestClient[web.Request, web.Application], pruner: FakePruner
) -> None:
    first = await call(client, "POST", "/events", push_event(event_id="x"), BEARER)
    again = await call(client, "POST", "/events", push_event(event_id="x"), BEARER)
    assert first[:2] == (202, {"status": "accepted", "id": "x", "repository": "app"})
    assert again[:2] == (200, {"status": "duplicate", "id": "x"})
    coalesced = await call(client, "POST", "/events", push_event(event_id="y"), BEARER)
    assert coalesced[:2] == (202, {"status": "coalesced", "id": "y", "repository": "app"})
    await settle(client)
    assert pruner.per_repository() == {"app": 1}


async def test_events_for_another_account_or_region_are_ignored(
    client_for: ClientFactory, pruner: FakePruner
) -> None:
    client = await client_for(scope=Scope(account="123456789012", region="us-west-2"))
    other_region = push_event(region="eu-west-1")
    other_account = push_event(event_id="2", account="999999999999")
    for body in (other_region, other_account):
        status, answer, _ = await call(client, "POST", "/events", body, BEARER)
        assert (status, answer["status"]) == (200, "ignored")
    assert (await call(client, "POST", "/events", push_event(event_id="3"), BEARER))[0] == 202
    await settle(client)
    assert pruner.per_repository() == {"app": 1}


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"[]", b'{"id": "x"}', push_event(repository="Not/Valid")],
    ids=["empty", "not JSON", "a list", "no envelope", "bad repository name"],
)
async def test_malformed_events_are_400_and_change_nothing(
    client: TestClient[web.Request, web.Application], pruner: FakePruner, body: bytes
) -> None:
    status, answer, _ = await call(client, "POST", "/events", body, BEARER)
    assert status == 400 and answer["error"]
    await settle(client)
    assert pruner.calls == []


def padded_push(size: int) -> bytes:
    base = push_event()
    doc = json.loads(base)
    doc["padding"] = ""
    filler = size - len(json.dumps(doc).encode())
    doc["padding"] = "x" * filler
    raw = json.dumps(doc).encode()
    assert len(raw) == size
    return raw


async def test_a_body_of_256_kib_is_accepted_one_byte_more_is_413(
    client: TestClient[web.Request, web.Application], pruner: FakePruner
) -> None:
    assert (await call(client, "POST", "/events", padded_push(MAX_BODY), BEARER))[0] == 202
    await settle(client)
    too_big = padded_push(MAX_BODY + 1).replace(b'"id": "id-1"', b'"id": "id-2"')
    status, answer, _ = await call(client, "POST", "/events", too_big, BEARER)
    assert status == 413 and "exceeded" in answer["error"]
    await settle(client)
    assert len(pruner.calls) == 1


async def test_a_full_backlog_answers_429_with_retry_after(
    client_for: ClientFactory,
) -> None:
    client = await client_for(max_backlog=1, debounce_s=30)
    assert (await call(client, "POST", "/events", push_event("one", "1"), BEARER))[0] == 202
    status, _, headers = await call(client, "POST", "/events", push_event("two", "2"), BEARER)
    assert (status, headers["Retry-After"]) == (429, "9")
    status, _, headers = await call(client, "POST", "/prune", b"{}", BEARER)
    assert (status, headers["Retry-After"]) == (429, "9")


async def test_draining_fails_readiness_and_answers_503(
    client: TestClient[web.Request, web.Application], pruner: FakePruner
) -> None:
    await drain(client.app)
    assert (await call(client, "GET", "/readyz"))[:2] == (503, {"status": "draining"})
    assert (await call(client, "GET", "/healthz"))[0] == 200
    status, _, headers = await call(client, "POST", "/events", push_event(), BEARER)
    assert (status, headers["Retry-After"]) == (503, "9")
    assert (await call(client, "POST", "/prune", b"{}", BEARER))[0] == 503
    ignored = await call(client, "POST", "/events", (SAMPLES / "delete.json").read_bytes(), BEARER)
    assert ignored[0] == 200
    assert pruner.calls == []


# --- prune, jobs, plan -------------------------------------------------------------------


async def test_prune_with_wait_answers_the_sweep_report(
    client: TestClient[web.Request, web.Application], pruner: FakePruner
) -> None:
    body = b'{"repositories": ["ab", "team/b"], "wait": true}'
    status, answer, _ = await call(client, "POST", "/prune", body, BEARER)
    expected = RunReport(False, (RepositoryReport("ab"), RepositoryReport("team/b")))
    assert (status, answer) == (200, report_to_json(expected))
    assert pruner.calls[0][:2] == (("ab", "team/b"), False)


async def test_prune_without_wait_answers_a_job_to_poll(
    client: TestClient[web.Request, web.Application], pruner: FakePruner
) -> None:
    status, job, headers = await call(client, "POST", "/prune", b'{"dry_run": true}', BEARER)
    assert status == 202 and job["state"] in ("queued", "running")
    assert headers["Location"] == f"/jobs/{job['id']}"
    assert (job["repositories"], job["dry_run"], job["report"]) == ([], True, None)
    async with asyncio.timeout(5):
        while job["state"] != "done":
            status, job, _ = await call(client, "GET", f"/jobs/{job['id']}", None, BEARER)
    assert job["report"] == report_to_json(RunReport(True))
    assert job["report"]["summary"]["total"]["images"] == 0
    assert pruner.calls[0][:2] == ((), True)


async def test_an_empty_prune_body_prunes_everything_in_the_background(
    client: TestClient[web.Request, web.Application], pruner: FakePruner
) -> None:
    status, job, _ = await call(client, "POST", "/prune", b"", BEARER)
    assert (status, job["dry_run"]) == (202, False)
    await settle(client)
    assert pruner.calls[0][:2] == ((), False)


async def test_a_failing_prune_with_wait_is_502(
    client: TestClient[web.Request, web.Application], pruner: FakePruner
) -> None:
    pruner.fail = True
    status, answer, _ = await call(client, "POST", "/prune", b'{"wait": true}', BEARER)
    assert (status, answer) == (502, {"error": "DescribeRepositories: boom"})


@pytest.mark.parametrize(
    "body", [b"{", b'{"repositories": []}', b'{"wait": "yes"}', b'{"force": true}']
)
async def test_bad_prune_bodies_are_400_and_prune_nothing(
    client: TestClient[web.Request, web.Application], pruner: FakePruner, body: bytes
) -> None:
    assert (await call(client, "POST", "/prune", body, BEARER))[0] == 400
    assert pruner.calls == []


async def test_an_unknown_job_is_404(client: TestClient[web.Request, web.Application]) -> None:
    status, answer, _ = await call(client, "GET", "/jobs/nope", None, BEARER)
    assert (status, answer) == (404, {"error": "no such job"})


@pytest.mark.parametrize("path", ["team/app", "team%2Fapp", "a/b/c"])
async def test_plan_takes_names_with_slashes_and_never_deletes(
    client: TestClient[web.Request, web.Application], pruner: FakePruner, path: str
) -> None:
    status, answer, _ = await call(client, "GET", f"/repositories/{path}/plan", None, BEARER)
    name = unquote(path)
    assert status == 200 and answer["dry_run"] is True
    assert [r["repository"] for r in answer["repositories"]] == [name]
    assert pruner.calls[0][:2] == ((name,), True)


@pytest.mark.parametrize("name", ["Team", "a", "team/", "x%2F%2Fy", "%0Aapp", "app%0A"])
async def test_plan_of_an_invalid_name_is_400(
    client: TestClient[web.Request, web.Application], pruner: FakePruner, name: str
) -> None:
    assert (await call(client, "GET", f"/repositories/{name}/plan", None, BEARER))[0] == 400
    assert pruner.calls == []


async def test_wrong_methods_and_paths_answer_json(
    client: TestClient[web.Request, web.Application],
) -> None:
    async with client.get("/events", headers=BEARER) as response:
        assert response.status == 405 and "POST" in response.headers["Allow"]
        assert "error" in await response.json()
    async with client.get("/nothing-here", headers=BEARER) as response:
        assert response.status == 404 and "error" in await response.json()
    async with client.get("/nothing-here") as response:
        assert response.status == 401


# --- metrics and the API description ------------------------------------------------------


class DeletingPruner:
    """Reports two deleted images of 100 and 250 bytes for whatever it is asked to prune."""

    async def prune(self, repositories: tuple[str, ...], *, dry_run: bool) -> RunReport:
        now = datetime.now(UTC)
        images = [Image(f"sha256:{i}", (), now, size=s) for i, s in ((1, 100), (2, 250))]
        plan = Plan("app", tuple(Decision(i, Verdict.EXPIRE, "old") for i in images))
        deleted = () if dry_run else ("sha256:1", "sha256:2")
        return RunReport(dry_run, (RepositoryReport("app", plan, deleted=deleted),))


def sample_value(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in metrics"
    return float(match.group(1))


async def test_metrics_count_events_prunes_and_reclaimed_bytes(aiohttp_client: Any) -> None:
    metrics = Metrics()
    deps = Deps(
        DeletingPruner(),
        TokenAuth(TOKEN),
        schedule=SchedulerSettings(debounce_s=0),
        metrics=metrics,
    )
    client = await aiohttp_client(make_app(deps))
    await call(client, "POST", "/events", push_event(), BEARER)
    await call(client, "POST", "/events", push_event(), BEARER)
    await call(client, "POST", "/events", b"{", BEARER)
    await call(client, "POST", "/events", push_event())
    await call(client, "GET", "/repositories/app/plan", None, BEARER)  # a plan is not a prune
    await settle(client)
    metrics.record_ecr_call("DescribeImages", "ok")
    async with client.get("/metrics") as response:
        text = await response.text()
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert sample_value(text, 'ecr_cleaner_events_total{status="accepted"}') == 1
    assert sample_value(text, 'ecr_cleaner_events_total{status="duplicate"}') == 1
    assert sample_value(text, 'ecr_cleaner_events_total{status="invalid"}') == 1
    assert sample_value(text, 'ecr_cleaner_events_total{status="unauthorized"}') == 1
    assert sample_value(text, 'ecr_cleaner_events_total{status="throttled"}') == 0
    assert sample_value(text, 'ecr_cleaner_prunes_total{result="ok"}') == 1
    assert sample_value(text, "ecr_cleaner_images_deleted_total") == 2
    assert sample_value(text, "ecr_cleaner_bytes_reclaimed_total") == 350
    assert sample_value(text, "ecr_cleaner_prune_seconds_count") == 1
    assert sample_value(text, "ecr_cleaner_queue_depth") == 0
    assert (
        sample_value(text, 'ecr_cleaner_ecr_calls_total{operation="DescribeImages",outcome="ok"}')
        == 1
    )


class InUseFailingPruner:
    """Prunes "app" fine; every other repository fails closed, as an unreadable cluster does."""

    async def prune(self, repositories: tuple[str, ...], *, dry_run: bool) -> RunReport:
        reports = tuple(
            RepositoryReport(name)
            if name == "app"
            else RepositoryReport(name, error="in-use source kubernetes: down", error_kind=IN_USE)
            for name in repositories
        )
        return RunReport(dry_run, reports)


async def test_metrics_time_push_to_pruned_count_fail_closed_prunes_and_show_readiness(
    aiohttp_client: Any,
) -> None:
    metrics = Metrics()
    deps = Deps(
        InUseFailingPruner(),
        TokenAuth(TOKEN),
        schedule=SchedulerSettings(debounce_s=0.05),
        metrics=metrics,
    )
    client = await aiohttp_client(make_app(deps))
    async with client.get("/readyz") as response:
        assert response.status == 200
    await call(client, "POST", "/events", push_event("app", "one"), BEARER)
    await call(client, "POST", "/events", push_event("app", "two"), BEARER)  # joins the first
    await call(client, "POST", "/events", push_event("other", "three"), BEARER)
    # "other" fails and is retried later (a failed prune is not settled): wait for the counts.
    get = metrics.registry.get_sample_value
    await until(lambda: get("ecr_cleaner_repository_errors_total", {"cause": "in_use"}) == 1)
    await until(lambda: get("ecr_cleaner_push_to_pruned_seconds_count") == 2)
    async with client.get("/metrics") as response:
        text = await response.text()
    assert sample_value(text, "ecr_cleaner_push_to_pruned_seconds_count") == 2, "app's two"
    # The first push waited out the debounce (asyncio may fire a timer a hair early); the
    # second joined it later and waited less.
    assert sample_value(text, "ecr_cleaner_push_to_pruned_seconds_sum") >= 0.045
    assert sample_value(text, 'ecr_cleaner_repository_errors_total{cause="in_use"}') == 1
    assert sample_value(text, 'ecr_cleaner_repository_errors_total{cause="registry"}') == 0
    assert sample_value(text, "ecr_cleaner_ready") == 1
    await drain(client.app)
    async with client.get("/readyz") as response:
        assert response.status == 503
    async with client.get("/metrics") as response:
        assert sample_value(await response.text(), "ecr_cleaner_ready") == 0


async def test_metrics_speak_openmetrics_when_asked(
    client: TestClient[web.Request, web.Application],
) -> None:
    async with client.get("/metrics", headers={"Accept": "application/openmetrics-text"}) as r:
        assert r.headers["Content-Type"].startswith("application/openmetrics-text")
        assert (await r.text()).endswith("# EOF\n")


async def test_each_app_has_its_own_metrics(client_for: ClientFactory) -> None:
    first, second = await client_for(), await client_for()
    await call(first, "POST", "/events", push_event(), BEARER)
    async with second.get("/metrics") as response:
        text = await response.text()
    assert sample_value(text, 'ecr_cleaner_events_total{status="accepted"}') == 0


async def test_the_openapi_document_is_valid_and_served(
    client: TestClient[web.Request, web.Application],
) -> None:
    validate_spec(SPEC)
    _, served, _ = await call(client, "GET", "/openapi.json")
    assert served == json.loads(json.dumps(SPEC))


async def test_every_route_is_documented_and_every_documented_route_exists(
    client: TestClient[web.Request, web.Application],
) -> None:
    routes = {
        (re.sub(r"\{(\w+)(:[^}]*)?\}", r"{\1}", r.resource.canonical), r.method.lower())
        for r in client.app.router.routes()
        if r.resource is not None
    }
    documented = {(path, method) for path, ops in SPEC["paths"].items() for method in ops}
    assert routes == documented
    public = {
        path
        for path, ops in SPEC["paths"].items()
        for operation in ops.values()
        if operation.get("security") == []
    }
    assert public == {"/healthz", "/readyz", "/metrics", "/openapi.json"}


# --- logs --------------------------------------------------------------------------------


def test_json_logs_are_one_object_per_line_with_the_extras() -> None:
    logger = logging.getLogger("cleaner.test")
    try:
        raise ValueError("boom")
    except ValueError:
        record = logger.makeRecord(
            "cleaner.test",
            logging.ERROR,
            __file__,
            1,
            "pruned %s\nnext line",
            ("team/app",),
            sys.exc_info(),
            extra={"repository": "team/app", "deleted": 3},
        )
    line = JsonFormatter().format(record)
    assert "\n" not in line
    doc = json.loads(line)
    assert doc["message"] == "pruned team/app\nnext line"
    assert (doc["level"], doc["logger"]) == ("ERROR", "cleaner.test")
    assert (doc["repository"], doc["deleted"]) == ("team/app", 3)
    assert doc["time"].endswith("Z") and "ValueError: boom" in doc["exc_info"]


def test_use_log_format_switches_only_the_console_handlers() -> None:
    logger = logging.getLogger("cleaner.test.handlers")
    console, elsewhere = logging.StreamHandler(sys.stderr), logging.StreamHandler(io.StringIO())
    logger.addHandler(console)
    logger.addHandler(elsewhere)
    try:
        use_log_format("json", logger)
        assert isinstance(console.formatter, JsonFormatter) and elsewhere.formatter is None
        use_log_format("text", logger)
        assert not isinstance(console.formatter, JsonFormatter)
    finally:
        logger.removeHandler(console)
        logger.removeHandler(elsewhere)
