"""Faults, a crash mid-sweep, re-verification before deleting, and the audit trail.

Every run must end in exactly the planned state, with an exit code that tells the truth.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from cleaner.emulator import (
    Platform,
    RegistryStore,
    descriptor,
    index_manifest,
    make_manifest,
    running,
)
from cleaner.engine import Engine, SweepRequest
from cleaner.planning.model import Image, Repository
from cleaner.planning.policy_file import parse_policy_file
from cleaner.planning.references import InUse, Use, parse_reference
from cleaner.registries.ecr import EcrRegistry
from tests.support.cli import run_cli

NOW = datetime.now(UTC)
ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
POLICY = {
    "repositories": [
        {
            "match": "*",
            "rules": [
                {
                    "rulePriority": 1,
                    "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed",
                                  "countUnit": "days", "countNumber": 1},
                    "action": {"type": "expire"},
                },
                {
                    "rulePriority": 2,
                    "selection": {"tagStatus": "any", "countType": "imageCountMoreThan",
                                  "countNumber": 20},
                    "action": {"type": "expire"},
                },
            ],
        }
    ],
    "protect": {"newer_than": "0s"},
    "safety": {"keep_at_least": 0},
}  # fmt: skip


def seed(store: RegistryStore, repositories: int, images: int) -> None:
    """CI-style repositories: tagged builds, untagged leftovers, one multi-arch index each."""
    for r in range(repositories):
        name = f"team/app{r}"
        store.create_repository(name)
        for i in range(images):
            tag = f"build-{i}" if i % 3 else None
            when = NOW - timedelta(hours=2 * i + 1)
            store.put_image(name, make_manifest(f"{name}-{i}"), tag=tag, pushed_at=when)
        children = [make_manifest(f"{name}-{arch}") for arch in ("amd64", "arm64")]
        for child in children:
            store.put_image(name, child, pushed_at=NOW - timedelta(days=30))
        entries = [
            descriptor(c, platform=Platform(a))
            for c, a in zip(children, ("amd64", "arm64"), strict=True)
        ]
        store.put_image(
            name, index_manifest(entries), tag="multiarch", pushed_at=NOW - timedelta(days=30)
        )


def policy_file(tmp_path: Path) -> str:
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(POLICY))
    return str(path)


async def planned_keep(url: str, policy: str) -> dict[str, set[str]]:
    code, out = await run_cli("plan", "--policy", policy, "--endpoint-url", url, "--output", "json")
    assert code == 0
    return {
        r["repository"]: {i["digest"] for i in r["keep"]} for r in json.loads(out)["repositories"]
    }


def state(store: RegistryStore) -> dict[str, set[str]]:
    return {name: set(store.digests(name)) for name in store.repos}


async def test_throttling_server_errors_and_resets_still_converge_exactly(tmp_path: Path) -> None:
    store = RegistryStore()
    seed(store, repositories=4, images=120)
    policy = policy_file(tmp_path)
    faults = {
        "throttle_rate": 0.25,
        "error_rate": 0.05,
        "reset_rate": 0.03,
        "latency_ms": 2,
        "random_seed": 9,
    }
    async with running(store, **faults) as url:
        keep = await planned_keep(url, policy)
        code, out = await run_cli(
            "sweep", "--policy", policy, "--endpoint-url", url, "--output", "json"
        )
    assert code == 0, out
    assert state(store) == keep
    reports = json.loads(out)["repositories"]
    bad = [(r["failed"][:2], r["error"]) for r in reports if r["failed"] or r["error"]]
    assert bad == []
    rejected = store.rejected
    assert sum(v for k, v in rejected.items() if k.startswith("Throttling")) > 10
    assert any(k.startswith("ConnectionReset") for k in rejected)


async def test_a_sweep_killed_mid_run_finishes_on_the_next_run(tmp_path: Path) -> None:
    store = RegistryStore()
    seed(store, repositories=6, images=250)
    policy, audit = policy_file(tmp_path), tmp_path / "audit.jsonl"
    async with running(store, latency_ms=40) as url:
        keep = await planned_keep(url, policy)
        argv = [sys.executable, "-m", "cleaner", "sweep", "--policy", policy, "--endpoint-url", url,
                "--concurrency", "2", "--audit-log", str(audit)]  # fmt: skip
        first = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.DEVNULL,
                                                     stderr=asyncio.subprocess.DEVNULL)  # fmt: skip
        async with asyncio.timeout(60):
            while store.calls["BatchDeleteImage"] < 3:  # noqa: ASYNC110 - polling another process
                await asyncio.sleep(0.02)
        first.send_signal(signal.SIGKILL)
        assert await first.wait() == -signal.SIGKILL
        assert state(store) != keep  # the kill left work undone
        quiet = {"stdout": asyncio.subprocess.DEVNULL, "stderr": asyncio.subprocess.DEVNULL}
        second = await asyncio.create_subprocess_exec(*argv, **quiet)  # type: ignore[arg-type]
        assert await second.wait() == 0
    assert state(store) == keep
    lines = audit.read_text().splitlines()
    records = [json.loads(line) for line in lines]
    deleted = {r["digest"] for r in records if r["event"] == "deleted"}
    before = {d for digests in keep.values() for d in digests}
    assert not deleted & before  # nothing kept was ever deleted
    assert len({r["run_id"] for r in records}) == 2


class Meddler:
    """The registry port with a hook that changes the registry right before a re-read."""

    def __init__(self, registry: EcrRegistry, before_describe: Any) -> None:
        self._registry, self._before = registry, before_describe

    def __getattr__(self, name: str) -> Any:
        return getattr(self._registry, name)

    async def recheck(self, repository: Repository, digests: Sequence[str]) -> dict[str, Image]:
        self._before()
        return await self._registry.recheck(repository, digests)


async def sweep_with(store: RegistryStore, meddle: Any, **engine: Any) -> Any:
    policy = parse_policy_file(POLICY)
    async with running(store) as url, EcrRegistry.connect(endpoint_url=url) as registry:
        request = SweepRequest(policy=policy, now=NOW, apply=True)
        return await Engine(Meddler(registry, meddle), **engine).run(request)  # type: ignore[arg-type]


async def test_a_tag_moved_onto_a_planned_image_keeps_it() -> None:
    store = RegistryStore()
    store.create_repository("app")
    old = store.put_image("app", make_manifest("old"), pushed_at=NOW - timedelta(days=3))
    report = await sweep_with(store, lambda: store.add_tag("app", old, "hotfix"))
    (repo,) = report.repositories
    assert repo.ok and repo.deleted == () and store.digests("app") == [old]
    (decision,) = repo.plan.keep
    assert decision.reason == "kept: tags changed since planning (now hotfix)"


async def test_an_image_that_became_in_use_is_kept_and_its_children_too() -> None:
    store = RegistryStore()
    store.create_repository("app")
    amd, arm = make_manifest("amd"), make_manifest("arm")
    for child in (amd, arm):
        store.put_image("app", child, pushed_at=NOW - timedelta(days=40))
    index = index_manifest(
        [descriptor(amd, platform=Platform("amd64")), descriptor(arm, platform=Platform("arm64"))]
    )
    old = store.put_image("app", index, pushed_at=NOW - timedelta(days=40))  # untagged: expired
    calls: list[int] = []

    class Cluster:
        async def snapshot(self) -> InUse:
            calls.append(1)  # planning sees nothing; by the delete, a pod runs the index
            ref = parse_reference(f"{ECR}/app@{old}")
            return InUse.of([Use(ref, "prod/Pod/late")]) if len(calls) > 1 and ref else InUse()

    report = await sweep_with(store, lambda: None, in_use=Cluster())
    (repo,) = report.repositories
    assert repo.ok and repo.deleted == ()
    assert len(store.digests("app")) == 3
    reasons = {d.image.digest: d.reason for d in repo.plan.keep}
    assert reasons.pop(old).startswith("kept: in use: prod/Pod/late")
    assert all("its parent sha256:" in r for r in reasons.values()), reasons


async def test_an_image_already_gone_counts_as_deleted() -> None:
    store = RegistryStore()
    store.create_repository("app")
    old = store.put_image("app", make_manifest("old"), pushed_at=NOW - timedelta(days=3))
    report = await sweep_with(store, lambda: store.batch_delete("app", [{"imageDigest": old}]))
    (repo,) = report.repositories
    assert repo.ok and repo.deleted == (old,)
    assert store.calls["BatchDeleteImage"] == 0  # nothing left to send


async def test_every_deletion_is_one_structured_log_line(caplog: pytest.LogCaptureFixture) -> None:
    store = RegistryStore()
    store.create_repository("app")
    old = store.put_image("app", make_manifest("old"), tag=None, pushed_at=NOW - timedelta(days=3))
    with caplog.at_level("INFO", logger="cleaner.engine"):
        await sweep_with(store, lambda: None)
    intent, record = [r for r in caplog.records if hasattr(r, "audit")]
    assert intent.audit["event"] == "intent"  # type: ignore[attr-defined]
    assert [i["digest"] for i in intent.audit["images"]] == [old]  # type: ignore[attr-defined]
    audit = record.audit  # type: ignore[attr-defined]
    assert audit["digest"] == old and audit["repository"] == "app" and audit["tags"] == []
    assert set(audit) == {
        "event",
        "time",
        "run_id",
        "repository",
        "digest",
        "tags",
        "pushed_at",
        "size",
        "rule",
        "reason",
    }
    assert audit["rule"] == 1 and audit["reason"].startswith("expired by rule 1")
