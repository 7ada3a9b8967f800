"""The Kubernetes in-use adapter against kmock's emulator, through the real kubernetes-asyncio
client (`tests.support.kube.Apiserver`)."""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import aiohttp.web
import kmock
import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from cleaner.clients.kubernetes import KubeTarget
from cleaner.errors import ClusterError
from cleaner.in_use.cluster import ClusterImages, connect, list_in_use
from cleaner.in_use.watcher import InUseWatcher
from cleaner.in_use.workloads import Kind, Objects
from cleaner.planning.model import Image, Repository
from cleaner.planning.references import in_use_protection
from cleaner.registries.ecr import ecr_matches
from tests.support.kube import RESOURCES, Apiserver, containers, digest, meta, template

ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
REPO = Repository("team/app", f"{ECR}/team/app", "123456789012")
DOWN = "http://127.0.0.1:9"  # the discard port: nothing listens there
GONE = {
    "type": "ERROR",
    "object": {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 410,
               "reason": "Expired", "message": "too old resource version"},
}  # fmt: skip


@pytest.fixture
async def server() -> AsyncIterator[tuple[Apiserver, str]]:
    async with Apiserver() as emulator, kmock.Server(emulator) as http:
        for resource in RESOURCES:
            emulator.resources[resource] = {}
        yield emulator, str(http.url).rstrip("/")


@pytest.fixture
async def api(server: tuple[Apiserver, str]) -> AsyncIterator[client.ApiClient]:
    async with client.ApiClient(client.Configuration(host=server[1])) as api_client:
        yield api_client


async def create_pod(api: client.ApiClient, name: str, image: str, **status: Any) -> None:
    body = {"metadata": meta(name), "spec": containers(image), "status": status}
    await client.CoreV1Api(api).create_namespaced_pod("prod", body)


async def test_pods_are_listed_page_by_page(
    server: tuple[Apiserver, str], api: client.ApiClient
) -> None:
    emulator, _ = server
    for i in range(7):
        await create_pod(api, f"p{i}", f"{ECR}/team/app:v{i}")

    in_use = await ClusterImages(api, "kmock", page_size=3).list_in_use()

    pages = emulator.lists("pods")
    assert [r.params.get("continue") for r in pages] == [None, "3", "6"]
    assert all(r.params["limit"] == "3" for r in pages)
    assert {u.ref.tag for u in in_use.uses} == {f"v{i}" for i in range(7)}


async def test_what_the_cluster_runs_or_will_run_is_kept(api: client.ApiClient) -> None:
    """A moved tag, a digest pin scaled to zero, a CronJob's tag are kept; the rest is free."""
    running, moved_to, pinned, nightly, unused = (digest(n) for n in range(1, 6))
    images = [
        Image(running, (), datetime(2025, 1, 1, tzinfo=UTC)),  # v1 used to point here
        Image(moved_to, ("v1",), datetime(2025, 1, 2, tzinfo=UTC)),
        Image(pinned, (), datetime(2025, 1, 3, tzinfo=UTC)),
        Image(nightly, ("nightly",), datetime(2025, 1, 4, tzinfo=UTC)),
        Image(unused, ("old",), datetime(2025, 1, 5, tzinfo=UTC)),
    ]
    await create_pod(
        api, "api-7d9-x", f"{ECR}/team/app:v1", phase="Running",
        containerStatuses=[{"name": "c0", "ready": True, "restartCount": 0,
                            "image": f"{ECR}/team/app:v1",
                            "imageID": f"docker-pullable://{ECR}/team/app@{running}"}],
    )  # fmt: skip
    pinned_spec = template(f"{ECR}/team/app@{pinned}", replicas=0)
    await client.AppsV1Api(api).create_namespaced_deployment(
        "prod", {"metadata": meta("batch"), "spec": pinned_spec}
    )
    cron = {"schedule": "@daily", "jobTemplate": {"spec": template(f"{ECR}/team/app:nightly")}}
    await client.BatchV1Api(api).create_namespaced_cron_job(
        "ops", {"metadata": meta("nightly", "ops"), "spec": cron}
    )

    in_use = await ClusterImages(api, "kmock").list_in_use()

    assert in_use_protection(REPO, images, in_use, ecr_matches) == {
        running: "in use: prod/Pod/api-7d9-x (running)",
        moved_to: "in use: prod/Pod/api-7d9-x (running)",
        pinned: "in use: prod/Deployment/batch (scaled to 0)",
        nightly: "in use: ops/CronJob/nightly",
    }


async def test_every_workload_kind_is_listed(api: client.ApiClient) -> None:
    apps, batch = client.AppsV1Api(api), client.BatchV1Api(api)
    spec = template(f"{ECR}/team/app:t")
    await apps.create_namespaced_replica_set("prod", {"metadata": meta("rs"), "spec": spec})
    await apps.create_namespaced_stateful_set("prod", {"metadata": meta("ss"), "spec": spec})
    await apps.create_namespaced_daemon_set("prod", {"metadata": meta("ds"), "spec": spec})
    await batch.create_namespaced_job("prod", {"metadata": meta("job"), "spec": spec})

    in_use = await ClusterImages(api, "kmock").list_in_use()

    assert {u.who for u in in_use.uses} == {
        "prod/ReplicaSet/rs",
        "prod/StatefulSet/ss",
        "prod/DaemonSet/ds",
        "prod/Job/job",
    }


async def test_an_unreachable_cluster_is_a_cluster_error() -> None:
    async with client.ApiClient(client.Configuration(host=DOWN)) as api_client:
        with pytest.raises(ClusterError, match=r"^down: list \w+s: ") as caught:
            await ClusterImages(api_client, "down").list_in_use()
    assert isinstance(caught.value.__cause__, aiohttp.ClientError)


async def test_an_api_refusal_is_a_cluster_error_with_its_status(
    server: tuple[Apiserver, str], api: client.ApiClient
) -> None:
    emulator, _ = server
    refusal = {"kind": "Status", "code": 403, "message": "daemonsets.apps is forbidden"}
    emulator[kmock.action.LIST, kmock.resource("apps/v1/daemonsets")] << 403 << refusal
    with pytest.raises(ClusterError, match=r"list DaemonSets: HTTP 403 daemonsets\.apps is forb"):
        await ClusterImages(api, "kmock").list_in_use()


def test_library_errors_do_not_leak_through_the_boundary() -> None:
    assert not issubclass(ClusterError, aiohttp.ClientError | ApiException)


def kubeconfig(tmp_path: Path, url: str, name: str = "kc") -> str:
    path = tmp_path / name
    path.write_text(
        textwrap.dedent(f"""\
            apiVersion: v1
            kind: Config
            clusters: [{{name: c, cluster: {{server: "{url}"}}}}]
            users: [{{name: u, user: {{token: t}}}}]
            contexts: [{{name: kmock, context: {{cluster: c, user: u}}}}]
            current-context: kmock
            """)
    )
    return str(path)


async def test_list_in_use_reads_kubeconfig_and_context(
    server: tuple[Apiserver, str], api: client.ApiClient, tmp_path: Path
) -> None:
    await create_pod(api, "p", f"{ECR}/team/app:v1")
    path = kubeconfig(tmp_path, server[1])

    by_flag = await list_in_use([KubeTarget(kubeconfig=path, context="kmock")], environ={})
    by_env = await list_in_use([KubeTarget()], environ={"KUBECONFIG": path})

    assert {u.who for u in by_flag.uses} == {u.who for u in by_env.uses} == {"prod/Pod/p"}


async def test_one_failing_cluster_fails_the_whole_list(
    server: tuple[Apiserver, str], tmp_path: Path
) -> None:
    good = kubeconfig(tmp_path, server[1], "good")
    bad = kubeconfig(tmp_path, DOWN, "bad")
    with pytest.raises(ClusterError, match=r"bad: list"):
        await list_in_use([KubeTarget(kubeconfig=good), KubeTarget(kubeconfig=bad)], environ={})


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (KubeTarget(kubeconfig="/nonexistent/kubeconfig"), "cannot load Kubernetes config"),
        (KubeTarget(context="no-such-context"), "cannot load Kubernetes config"),
    ],
)
async def test_bad_config_is_a_cluster_error(
    target: KubeTarget, message: str, tmp_path: Path
) -> None:
    environ = {"KUBECONFIG": kubeconfig(tmp_path, DOWN)}
    with pytest.raises(ClusterError, match=message):
        await list_in_use([target], environ=environ)


async def eventually(check: Any, timeout_s: float = 5) -> None:
    async with asyncio.timeout(timeout_s):
        while not check():  # noqa: ASYNC110 - polls the adapter's state, which has no event
            await asyncio.sleep(0.02)


async def test_the_watcher_follows_new_and_deleted_pods(api: client.ApiClient) -> None:
    await create_pod(api, "old", f"{ECR}/team/app:v1")
    async with InUseWatcher([ClusterImages(api, "kmock")], watch_timeout_s=5) as watcher:
        await watcher.wait_synced(5)
        assert {u.who for u in watcher.snapshot().uses} == {"prod/Pod/old"}

        await create_pod(api, "new", f"{ECR}/team/app:v2")
        await eventually(lambda: len(watcher.snapshot()) == 2)
        await client.CoreV1Api(api).delete_namespaced_pod("old", "prod")
        await eventually(lambda: {u.who for u in watcher.snapshot().uses} == {"prod/Pod/new"})


async def test_the_watcher_relists_after_410_gone(
    server: tuple[Apiserver, str], api: client.ApiClient, caplog: pytest.LogCaptureFixture
) -> None:
    """An expired resourceVersion is routine: relist at once, no error, never unhealthy."""
    emulator, _ = server
    await create_pod(api, "p", f"{ECR}/team/app:v1")
    emulator[kmock.action.WATCH, kmock.resource("v1/pods")][:1] << GONE  # first watch only
    cluster = ClusterImages(api, "kmock")
    async with InUseWatcher([cluster], watch_timeout_s=5, retry_s=0.05) as watcher:
        await watcher.wait_synced(5)
        await eventually(lambda: len(emulator.lists("pods")) == 2)
        assert watcher.healthy
        await create_pod(api, "after", f"{ECR}/team/app:v2")
        await eventually(lambda: len(watcher.snapshot()) == 2)
    assert not [r for r in caplog.records if r.name == "cleaner.in_use.kubernetes"]


async def test_the_watcher_fails_closed_and_recovers(
    server: tuple[Apiserver, str], api: client.ApiClient
) -> None:
    emulator, _ = server
    outage = {"kind": "Status", "code": 503, "message": "etcd is sad"}
    emulator[kmock.action.LIST, kmock.resource("apps/v1/deployments")][:2] << 503 << outage
    async with InUseWatcher([ClusterImages(api, "kmock")], retry_s=0.05) as watcher:
        await eventually(lambda: watcher.last_error is not None)
        assert not watcher.healthy
        with pytest.raises(ClusterError, match="etcd is sad"):
            watcher.snapshot()
        await watcher.wait_synced(5)
        await eventually(lambda: watcher.healthy)
        assert watcher.last_error is None
        watcher.snapshot()


async def test_an_unreachable_cluster_never_syncs() -> None:
    async with client.ApiClient(client.Configuration(host=DOWN)) as api_client:
        async with InUseWatcher([ClusterImages(api_client, "down")], retry_s=0.05) as watcher:
            with pytest.raises(ClusterError, match="not listed after"):
                await watcher.wait_synced(0.3)
            assert not watcher.healthy
            # The refused connection may land after the 0.3 s on a loaded machine.
            await eventually(lambda: watcher.last_error is not None)
            assert watcher.last_error is not None and watcher.last_error.startswith("down: list")
            with pytest.raises(ClusterError, match="in-use set unavailable"):
                watcher.snapshot()


# --- exec credential plugins (`aws eks get-token`): tokens that expire -----------------------

CREDENTIAL_PLUGIN = """\
import datetime, json, pathlib, sys
runs, minutes = pathlib.Path(sys.argv[1]), float(sys.argv[2])
n = int(runs.read_text() or 0) + 1 if runs.exists() else 1
runs.write_text(str(n))
if (runs.parent / "down").exists():
    sys.exit("token service unavailable")
expiry = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=minutes)
status = {"token": f"tok-{n}", "expirationTimestamp": expiry.strftime("%Y-%m-%dT%H:%M:%SZ")}
print(json.dumps({"apiVersion": "client.authentication.k8s.io/v1beta1",
                  "kind": "ExecCredential", "status": status}))
"""


def exec_kubeconfig(tmp_path: Path, url: str, minutes: float) -> str:
    """A kubeconfig whose user runs a credential plugin, like EKS's `aws eks get-token`."""
    (tmp_path / "plugin.py").write_text(CREDENTIAL_PLUGIN)
    plugin = {
        "apiVersion": "client.authentication.k8s.io/v1beta1",
        "command": sys.executable,
        "args": [str(tmp_path / "plugin.py"), str(tmp_path / "runs"), str(minutes)],
    }
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": url}}],
        "users": [{"name": "u", "user": {"exec": plugin}}],
        "contexts": [{"name": "eks", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "eks",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps(config))  # JSON is YAML
    return str(path)


def bearer_tokens(emulator: Apiserver) -> list[str]:
    return [r.headers.get("Authorization", "") for r in emulator._requests]


async def test_an_exec_token_near_its_expiry_is_fetched_again(
    server: tuple[Apiserver, str], tmp_path: Path
) -> None:
    """One minute left is inside the client's five-minute margin: each request asks again,
    so a receiver watching for hours never sends a token the cluster has stopped taking."""
    emulator, url = server
    target = KubeTarget(kubeconfig=exec_kubeconfig(tmp_path, url, minutes=1))
    async with connect(target, environ={}) as cluster:
        await cluster.list_in_use()
        await cluster.list_in_use()
    tokens = bearer_tokens(emulator)
    assert all(t.startswith("Bearer tok-") for t in tokens) and len(set(tokens)) > 1
    assert int((tmp_path / "runs").read_text()) > 2


async def test_a_fresh_exec_token_is_reused(server: tuple[Apiserver, str], tmp_path: Path) -> None:
    emulator, url = server
    target = KubeTarget(kubeconfig=exec_kubeconfig(tmp_path, url, minutes=60))
    async with connect(target, environ={}) as cluster:
        await cluster.list_in_use()
        await cluster.list_in_use()
    assert set(bearer_tokens(emulator)) == {"Bearer tok-1"}
    assert (tmp_path / "runs").read_text() == "1"


async def test_a_failing_credential_plugin_is_a_cluster_error(
    server: tuple[Apiserver, str], tmp_path: Path
) -> None:
    _, url = server
    target = KubeTarget(kubeconfig=exec_kubeconfig(tmp_path, url, minutes=1))
    async with connect(target, environ={}) as cluster:
        await cluster.list_in_use()
        (tmp_path / "down").touch()
        with pytest.raises(ClusterError, match=r"credentials: .*token service unavailable"):
            await cluster.list_in_use()


class CrashingOnce(ClusterImages):
    """A cluster adapter with a bug: its first list raises something that is not ours."""

    crashed = False

    async def list_kind(self, kind: Kind, *, attempts: int = 3) -> tuple[Objects, str]:
        if not self.crashed:
            self.crashed = True
            raise RuntimeError("a bug, not an outage")
        return await super().list_kind(kind, attempts=attempts)


async def test_an_unexpected_error_fails_the_watcher_closed_not_dead(
    api: client.ApiClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A reflector task that died would keep its old objects and look healthy forever."""
    async with InUseWatcher([CrashingOnce(api, "kmock")], retry_s=0.5) as watcher:
        await eventually(lambda: watcher.last_error is not None)
        assert "a bug, not an outage" in (watcher.last_error or "") and not watcher.healthy
        with pytest.raises(ClusterError, match="in-use set unavailable"):
            watcher.snapshot()
        await watcher.wait_synced(5)
        await eventually(lambda: watcher.healthy)
    assert any("unexpected error" in r.message for r in caplog.records)
