"""The audit trail is written ahead: a batch the registry applied is on record even when its
answer never reached the sweep, and the next run reconciles it from the registry."""

from __future__ import annotations

import asyncio
import io
import json
import signal
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from cleaner.audit import audit_log, scan
from cleaner.emulator import RegistryStore, make_manifest, running
from cleaner.engine.reconcile import reconcile
from cleaner.planning.model import Image
from tests.support.cli import run_cli
from tests.support.fakes import FakeRegistry
from tests.support.policies import keep_newest_rule
from tests.support.servers import loopback

NOW = datetime.now(UTC)
KEEP = 3


class HoldingProxy:
    """Forwards ECR calls to the emulator; the first BatchDeleteImage is forwarded (the
    registry acts) but its answer is held back forever, as if the process died while the
    answer was on the wire."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.applied = asyncio.Event()
        self._never = asyncio.Event()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.upstream, data=body, headers=headers) as answer,
        ):
            payload, status = await answer.read(), answer.status
            kept = {k: v for k, v in answer.headers.items() if k.lower() == "content-type"}
        if request.headers.get("X-Amz-Target", "").endswith(".BatchDeleteImage"):
            self.applied.set()
            await self._never.wait()  # the registry has acted; the answer never comes
        return web.Response(body=payload, status=status, headers=kept)

    @classmethod
    async def start(cls, upstream: str) -> AsyncIterator[tuple[HoldingProxy, str]]:
        proxy = cls(upstream)
        app = web.Application()
        app.router.add_post("/", proxy.handle)
        async with loopback(app, shutdown_timeout=0.1) as url:
            try:
                yield proxy, f"{url}/"
            finally:
                proxy._never.set()  # before the cleanup, which waits for the handlers


def day(n: int) -> datetime:
    return NOW - timedelta(days=n)


def seeded(store: RegistryStore, name: str, count: int) -> list[str]:
    store.create_repository(name)
    return [
        store.put_image(name, make_manifest(f"{name}{i}"), tag=f"b{i}", pushed_at=day(i + 1))
        for i in range(count)
    ]


def write_policy(tmp_path: Path) -> str:
    path = tmp_path / "policy.json"
    doc = {
        "repositories": [{"match": "*", "rules": [keep_newest_rule(KEEP)]}],
        "protect": {"newer_than": "0s", "in_use": False},
        "safety": {"keep_at_least": 0},
    }
    path.write_text(json.dumps(doc))
    return str(path)


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


async def sweep(*argv: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cleaner", "sweep", *argv,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip


async def test_a_batch_applied_but_unanswered_is_recorded_by_the_next_run(tmp_path: Path) -> None:
    store = RegistryStore()
    seeded_digests = set(seeded(store, "app", 250))  # 247 to delete: three batches
    policy, log = write_policy(tmp_path), tmp_path / "audit.jsonl"
    async with running(store) as url:
        holder = HoldingProxy.start(url)
        proxy, proxy_url = await holder.__anext__()
        try:
            first = await sweep("--policy", policy, "--endpoint-url", proxy_url,
                                "--audit-log", str(log))  # fmt: skip
            async with asyncio.timeout(60):
                await proxy.applied.wait()
            first.send_signal(signal.SIGKILL)
            assert await first.wait() == -signal.SIGKILL
        finally:
            await holder.aclose()
        gone = seeded_digests - set(store.digests("app"))
        assert len(gone) == 100  # the registry applied the first batch ...
        before = records(log)
        assert {r["event"] for r in before} == {"intent"}  # ... and only its intent was written
        second = await sweep("--policy", policy, "--endpoint-url", url, "--audit-log", str(log))
        assert await second.wait() == 0
    gone = seeded_digests - set(store.digests("app"))
    after = records(log)
    deleted = [r for r in after if r["event"] == "deleted"]
    assert {r["digest"] for r in deleted} == gone and len(deleted) == len(gone) == 247
    reconciled = [r for r in deleted if r.get("reconciled")]
    assert len(reconciled) == 100 and {r["run_id"] for r in reconciled} == {before[0]["run_id"]}
    assert all("reconciled from the registry" in r["reason"] for r in reconciled)
    assert scan(io.StringIO(log.read_text())) == {}  # nothing left open


async def test_an_intent_whose_images_are_still_there_is_closed_as_not_deleted() -> None:
    present = Image("sha256:" + "1" * 64, ("v1",), NOW)
    text = json.dumps(
        {"event": "intent", "run_id": "r1", "repository": "app", "time": "x",
         "images": [{"digest": present.digest, "tags": ["v1"], "reason": "expired by rule 1"},
                    {"digest": "sha256:" + "2" * 64, "tags": [], "reason": "expired by rule 1"}]}
    )  # fmt: skip
    open_ = scan(io.StringIO(text + "\n"))
    written: list[dict[str, Any]] = []
    settled = await reconcile(open_.values(), FakeRegistry({"app": [present]}), written.append)
    assert settled == 2
    by_digest = {r["digest"]: r for r in written}
    assert by_digest[present.digest]["event"] == "not_deleted"
    assert by_digest[present.digest]["code"] == "StillPresent"
    assert by_digest["sha256:" + "2" * 64]["event"] == "deleted"


def test_scan_skips_a_line_cut_short_and_pairs_outcomes_with_intents() -> None:
    lines = [
        {"event": "intent", "run_id": "a", "repository": "r",
         "images": [{"digest": "d1"}, {"digest": "d2"}, {"digest": "d3"}]},
        {"event": "deleted", "run_id": "a", "repository": "r", "digest": "d1"},
        {"event": "not_deleted", "run_id": "a", "repository": "r", "digest": "d2"},
    ]  # fmt: skip
    text = "\n".join(json.dumps(line) for line in lines) + '\n{"event": "del'
    assert {key[-1] for key in scan(io.StringIO(text))} == {"d3"}


async def test_a_plan_never_reconciles_or_writes(tmp_path: Path, emulator: Any) -> None:
    """Only runs that delete reconcile: a plan reads the registry and writes nothing."""
    log = tmp_path / "audit.jsonl"
    intent = {"event": "intent", "run_id": "a", "repository": "app", "images": [{"digest": "d"}]}
    log.write_text(json.dumps(intent) + "\n")
    with audit_log(str(log)) as audit:
        assert audit is not None and [i.image["digest"] for i in audit.open_intents()] == ["d"]
    emulator.create_repository("app")
    code, _ = await run_cli(
        "sweep", "--dry-run", "--policy", write_policy(tmp_path),
        "--endpoint-url", emulator.endpoint_url, "--audit-log", str(log),
    )  # fmt: skip
    assert code == 0 and records(log) == [intent]


async def test_the_receiver_reconciles_at_start(tmp_path: Path) -> None:
    """`serve --audit-log` closes what an earlier process left open before it prunes."""
    from cleaner import wiring
    from cleaner.planning.policy_file import load_policy_file
    from cleaner.settings import parse_args

    store = RegistryStore()
    (digest,) = seeded(store, "app", 1)
    log = tmp_path / "audit.jsonl"
    image = {"digest": digest, "tags": ["b0"], "reason": "expired by rule 1"}
    intent = {"event": "intent", "run_id": "old", "repository": "app", "images": [image]}
    log.write_text(json.dumps(intent) + "\n")
    async with running(store) as url:
        argv = ["serve", "--policy", write_policy(tmp_path), "--endpoint-url", url]
        settings = parse_args([*argv, "--audit-log", str(log)], environ={})
        assert settings.engine is not None and settings.serve is not None
        policy = load_policy_file(settings.engine.policy_path)
        async with wiring.open_receiver(settings.engine, settings.serve, policy, None):
            pass
    (outcome,) = records(log)[1:]
    assert outcome["event"] == "not_deleted" and outcome["reconciled"] is True
