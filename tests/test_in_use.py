"""In-use protection end to end: a sweep through the CLI keeps what the cluster runs, fails
closed, and prunes of one repository serialise through the Lease.

The cluster is kmock's KubernetesEmulator (extended server-side, see tests/support/kube.py)
reached by the real kubernetes-asyncio client through a kubeconfig file; the registry is the
emulator or moto, over HTTP.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import kmock
import pytest
import yaml
from kubernetes_asyncio import client

from cleaner.coordination.lease import LeaseCoordinator
from cleaner.engine import Engine, SweepRequest
from cleaner.planning.model import Image, Repository
from cleaner.planning.policy_file import parse_policy_file
from tests.support.backends import Backend
from tests.support.cli import run_cli
from tests.support.fakes import FakeRegistry
from tests.support.kube import NS, RESOURCES, Apiserver, LeaseServer, containers, meta, template

ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
NOW = datetime.now(UTC)


def kubeconfig(tmp_path: Path, server: str) -> str:
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "kmock", "cluster": {"server": server}}],
                "users": [{"name": "tester", "user": {"token": "not-checked"}}],
                "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "tester"}}],
                "current-context": "kmock",
            }
        )
    )
    return str(path)


@pytest.fixture
async def cluster() -> AsyncIterator[tuple[client.ApiClient, str]]:
    async with Apiserver() as emulator, kmock.Server(emulator) as http:
        for resource in RESOURCES:
            emulator.resources[resource] = {}
        url = str(http.url).rstrip("/")
        async with client.ApiClient(client.Configuration(host=url)) as api:
            yield api, url


async def seed_workloads(api: client.ApiClient, running: str, pinned: str) -> None:
    core, apps, batch = client.CoreV1Api(api), client.AppsV1Api(api), client.BatchV1Api(api)
    # The pod started from `v1`, which has since moved: only its imageID names the digest.
    status = {"containerStatuses": [{
        "name": "c0", "image": f"{ECR}/app:v1", "imageID": f"docker-pullable://{ECR}/app@{running}",
        "ready": True, "restartCount": 0,
    }]}  # fmt: skip
    pod = {"metadata": meta("api-7d9f"), "spec": containers(f"{ECR}/app:v1"), "status": status}
    await core.create_namespaced_pod("prod", pod)
    deployment = {"metadata": meta("rollback"), "spec": template(f"{ECR}/app@{pinned}", replicas=0)}
    await apps.create_namespaced_deployment("prod", deployment)
    job = {"template": {"spec": {**containers(f"{ECR}/app:nightly"), "restartPolicy": "Never"}}}
    cronjob = {
        "metadata": meta("nightly"),
        "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": job}},
    }
    await batch.create_namespaced_cron_job("prod", cronjob)


def seed_registry(backend: Backend) -> dict[str, str]:
    backend.create_repository("app")
    images = {
        "running": ([], 9),  # the image v1 used to name
        "pinned": ([], 8),
        "nightly": (["nightly"], 7),
        "free-1": (["build-1"], 6),
        "free-2": (["build-2"], 5),
        "v1": (["v1"], 2),
        "newest": (["build-9"], 1),
    }
    return {
        name: backend.push("app", tags, NOW - timedelta(days=days), seed=f"in-use-{name}")
        for name, (tags, days) in images.items()
    }


def policy_file(tmp_path: Path) -> str:
    keep_1 = {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 1}
    doc = {
        "repositories": [
            {
                "match": "*",
                "rules": [{"rulePriority": 1, "selection": keep_1, "action": {"type": "expire"}}],
            }
        ],
        "protect": {"in_use": True, "newer_than": "0s"},
    }
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


async def test_what_the_cluster_runs_or_will_run_survives_the_sweep(
    backend: Backend, cluster: tuple[client.ApiClient, str], tmp_path: Path
) -> None:
    api, url = cluster
    digests = seed_registry(backend)
    await seed_workloads(api, digests["running"], digests["pinned"])
    code, out = await run_cli(
        "sweep", "--policy", policy_file(tmp_path), "--kubeconfig", kubeconfig(tmp_path, url),
        "--endpoint-url", backend.endpoint_url, "--output", "json",
    )  # fmt: skip
    assert code == 0, out
    (report,) = json.loads(out)["repositories"]
    names = {d: n for n, d in digests.items()}
    assert {names[d] for d in report["deleted"]} == {"free-1", "free-2"}
    reasons = {names[i["digest"]]: i["reason"] for i in report["keep"]}
    assert reasons["running"].startswith("protected: in use: prod/Pod/api-7d9f")
    assert reasons["pinned"].startswith("protected: in use: prod/Deployment/rollback (scaled to 0)")
    assert reasons["nightly"].startswith("protected: in use: prod/CronJob/nightly")
    assert reasons["v1"].startswith("protected: in use: prod/Pod/api-7d9f")
    assert backend.digests("app") == set(digests.values()) - {digests["free-1"], digests["free-2"]}


async def test_an_unreachable_cluster_deletes_nothing_and_exits_1(
    backend: Backend, tmp_path: Path
) -> None:
    digests = seed_registry(backend)
    code, out = await run_cli(
        "sweep", "--policy", policy_file(tmp_path), "--kubeconfig", kubeconfig(tmp_path, "http://127.0.0.1:9"),
        "--endpoint-url", backend.endpoint_url, "--output", "json",
    )  # fmt: skip
    assert code == 1
    (report,) = json.loads(out)["repositories"]
    assert report["deleted"] == [] and "Cannot connect to host 127.0.0.1:9" in report["error"]
    assert backend.digests("app") == set(digests.values())


@pytest.fixture
async def leases() -> AsyncIterator[client.ApiClient]:
    async with LeaseServer() as emulator, kmock.Server(emulator) as http:
        emulator.resources["coordination.k8s.io/v1/leases"] = {}
        async with client.ApiClient(client.Configuration(host=str(http.url).rstrip("/"))) as api:
            yield api


class Recorder(FakeRegistry):
    """Records when each prune of a repository starts listing and finishes deleting."""

    def __init__(self, images: dict[str, list[Image]]) -> None:
        super().__init__(images, delay=0.05)
        self.timeline: list[str] = []

    async def images(self, repository: Repository) -> list[Image]:
        self.timeline.append("list")
        return await super().images(repository)

    async def delete(self, repository: Repository, digests: Any) -> Any:
        result = await super().delete(repository, digests)
        self.timeline.append("deleted")
        return result


async def test_two_concurrent_prunes_of_one_repository_serialise_through_the_lease(
    leases: client.ApiClient,
) -> None:
    images = [Image(f"sha256:{i:064x}", (f"t{i}",), NOW - timedelta(days=i)) for i in range(6)]
    registry = Recorder({"app": images})
    keep_2 = {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 2}
    rule = {"rulePriority": 1, "selection": keep_2, "action": {"type": "expire"}}
    policy = parse_policy_file({"rules": [rule]})
    request = SweepRequest(policy=policy, now=NOW, apply=True)
    engines = [Engine(registry, coordinator=LeaseCoordinator(leases, NS, 15)) for _ in range(2)]
    reports = await asyncio.gather(*(e.run(request) for e in engines))
    assert all(r.ok for r in reports)
    # The second prune lists only after the first has deleted: never interleaved.
    assert registry.timeline == ["list", "deleted", "list"]
    assert sum(len(r.repositories[0].deleted) for r in reports) == 4


def test_a_cluster_config_that_cannot_load_is_one_line_and_exit_1(tmp_path: Path) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "cleaner", "plan", "--policy", policy_file(tmp_path),
         "--kubeconfig", str(tmp_path / "missing"), "--endpoint-url", "http://127.0.0.1:9"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
