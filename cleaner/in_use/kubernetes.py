"""Kubernetes adapter: the images clusters run or will run, as an `InUse` (kubernetes-asyncio).

Lists and watches raw JSON (`_preload_content=False`): deserialising thousands of pods into
client models is slow, and one extractor then serves both list items and watch events.
Every library failure leaves this module as `ClusterError`, raised `from` the original.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Mapping,
    Sequence,
)
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import yaml
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import OpenApiException

from cleaner.errors import ClusterError
from cleaner.planning.references import InUse, Use, json_object, json_objects, workload_uses

log = logging.getLogger(__name__)

PAGE_SIZE = 500
DEFAULT_KUBECONFIG = os.path.expanduser("~/.kube/config")
REQUEST_TIMEOUT_S = 60.0
MESSAGE_MAX = 256  # API error bodies can be huge; keep log lines readable (kopf does the same)
T = TypeVar("T")
_TRANSPORT_ERRORS = (OpenApiException, config.ConfigException, aiohttp.ClientError, OSError)
Objects = dict[str, frozenset[Use]]
"""`namespace/name` -> the image uses of that object."""


@dataclass(frozen=True, slots=True)
class Kind:
    name: str
    api: str
    lister: str


KINDS = (
    Kind("Pod", "CoreV1Api", "list_pod_for_all_namespaces"),
    Kind("Deployment", "AppsV1Api", "list_deployment_for_all_namespaces"),
    Kind("ReplicaSet", "AppsV1Api", "list_replica_set_for_all_namespaces"),
    Kind("StatefulSet", "AppsV1Api", "list_stateful_set_for_all_namespaces"),
    Kind("DaemonSet", "AppsV1Api", "list_daemon_set_for_all_namespaces"),
    Kind("Job", "BatchV1Api", "list_job_for_all_namespaces"),
    Kind("CronJob", "BatchV1Api", "list_cron_job_for_all_namespaces"),
)


def object_key(obj: Mapping[str, Any]) -> str:
    meta = json_object(obj.get("metadata"))
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


async def call_json(call: Awaitable[Any], *, cluster: str, what: str) -> dict[str, Any]:
    """Await one `_preload_content=False` API call; its JSON body, or ClusterError."""
    try:
        response = await call
        async with response:
            body = await response.read()
        data = json.loads(body) if body else {}
    except (*_TRANSPORT_ERRORS, ValueError) as error:
        raise ClusterError(f"{cluster}: {what}: {error}"[:MESSAGE_MAX], cluster=cluster) from error
    if not 200 <= response.status < 300:
        raise http_error(cluster, what, response.status, data)
    return data if isinstance(data, dict) else {}


def http_error(cluster: str, what: str, status: int, data: object) -> ClusterError:
    message = json_object(data).get("message") or json_object(data).get("reason") or "error"
    text = f"{cluster}: {what}: HTTP {status} {message}"[:MESSAGE_MAX]
    return ClusterError(text, cluster=cluster, status=status)


@dataclass(frozen=True, slots=True)
class KubeTarget:
    """One cluster to ask: a kubeconfig file and/or context, or (neither) the default."""

    kubeconfig: str | None = None
    context: str | None = None

    def __str__(self) -> str:
        return self.context or self.kubeconfig or "default cluster"


def in_cluster(environ: Mapping[str, str] = os.environ) -> bool:
    return bool(environ.get("KUBERNETES_SERVICE_HOST"))


def config_available(target: KubeTarget, environ: Mapping[str, str] = os.environ) -> bool:
    """For `protect.in_use: auto`: is there any cluster config `api_client` could load?"""
    explicit = target.kubeconfig or target.context or environ.get("KUBECONFIG")
    return bool(explicit) or in_cluster(environ) or os.path.exists(DEFAULT_KUBECONFIG)


async def api_client(
    target: KubeTarget, environ: Mapping[str, str] = os.environ
) -> client.ApiClient:
    """An ApiClient for the target. Precedence: --kubeconfig, KUBECONFIG, in-cluster, ~/.kube."""
    configuration = client.Configuration()
    path = target.kubeconfig or environ.get("KUBECONFIG")
    try:
        if not path and target.context is None and in_cluster(environ):
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        else:
            loader = await config.load_kube_config(
                config_file=path or DEFAULT_KUBECONFIG,  # may list several files, `:`-separated
                context=target.context,
                client_configuration=configuration,
                persist_config=False,  # never write tokens back into a (read-only) kubeconfig
            )
            if hasattr(loader, "exec_plugin_expiry"):
                configuration.refresh_api_key_hook = _exec_token_refresh(loader, str(target))
    except _CONFIG_ERRORS as error:
        raise ClusterError(
            f"{target}: cannot load Kubernetes config: {error}", cluster=str(target)
        ) from error
    return client.ApiClient(configuration)


_CONFIG_ERRORS = (config.ConfigException, OSError, yaml.YAMLError, KeyError, TypeError)


def _exec_token_refresh(
    loader: Any, cluster: str
) -> Callable[[client.Configuration], Awaitable[None]]:
    """A hook the client awaits before each request: an exec plugin's token (`aws eks
    get-token` gives 15 minutes) is fetched again once it is about to expire, so a receiver
    watching a cluster from outside keeps working. A plugin that fails is a ClusterError:
    the watcher then fails closed and retries instead of losing its task."""
    # One run at a time: the seven watches of a cluster would otherwise start seven plugins
    # at the expiry, and a request cancelled mid-run would leave its plugin process behind.
    running = asyncio.Lock()

    async def refresh(configuration: client.Configuration) -> None:
        async with running:
            try:
                await loader.load_from_exec_plugin()  # runs the plugin only near the expiry
            except (*_CONFIG_ERRORS, RuntimeError, ValueError) as error:
                text = f"{cluster}: credentials: {error}"[:MESSAGE_MAX]
                raise ClusterError(text, cluster=cluster) from error
        configuration.api_key["BearerToken"] = loader.token

    return refresh


class ClusterImages:
    """One cluster's workloads: list them once, or watch them (see `InUseWatcher`)."""

    def __init__(self, api: client.ApiClient, name: str, *, page_size: int = PAGE_SIZE) -> None:
        self.api = api
        self.name = name
        self.page_size = page_size
        apis = {a: getattr(client, a)(api) for a in {k.api for k in KINDS}}
        self._listers = {k.name: getattr(apis[k.api], k.lister) for k in KINDS}

    async def list_in_use(self) -> InUse:
        listed = await gather_or_raise(self.list_kind(kind) for kind in KINDS)
        return InUse.of(u for objects, _ in listed for uses in objects.values() for u in uses)

    async def list_kind(self, kind: Kind, *, attempts: int = 3) -> tuple[Objects, str]:
        """Every object of the kind, and the resourceVersion to watch from."""
        for attempt in range(1, attempts + 1):
            try:
                return await self._list_pages(kind)
            except ClusterError as error:
                # 410 mid-list: the continue token expired; only a fresh list is consistent.
                if error.status != 410 or attempt == attempts:
                    raise
        raise AssertionError("unreachable")

    async def _list_pages(self, kind: Kind) -> tuple[Objects, str]:
        objects: Objects = {}
        token = None
        while True:
            page = await call_json(
                self._listers[kind.name](
                    limit=self.page_size,
                    _continue=token,
                    _preload_content=False,
                    _request_timeout=REQUEST_TIMEOUT_S,
                ),
                cluster=self.name,
                what=f"list {kind.name}s",
            )
            for item in json_objects(page.get("items")):
                objects[object_key(item)] = workload_uses(kind.name, item)
            meta = json_object(page.get("metadata"))
            token = meta.get("continue")
            if not token:
                return objects, str(meta.get("resourceVersion") or "")

    async def watch_kind(
        self, kind: Kind, since: str, timeout_s: int, on_event: Callable[[dict[str, Any]], None]
    ) -> None:
        """Feed watch events from `since` to `on_event` until the server ends the watch."""
        what = f"watch {kind.name}s"
        # The server ends the watch after timeout_s; the read timeout catches a connection
        # that went silent without closing, and ends the watch the same way.
        timeout = aiohttp.ClientTimeout(sock_connect=REQUEST_TIMEOUT_S, sock_read=timeout_s + 30)
        try:
            response = await self._listers[kind.name](
                watch=True,
                resource_version=since or None,
                allow_watch_bookmarks=True,
                timeout_seconds=timeout_s,
                _preload_content=False,
                _request_timeout=timeout,
            )
            async with response:
                if response.status != 200:
                    body = await response.read()
                    raise http_error(self.name, what, response.status, json.loads(body or "{}"))
                await _feed_lines(response.content.iter_any(), on_event)
        except aiohttp.SocketTimeoutError:
            return
        except (*_TRANSPORT_ERRORS, ValueError) as error:
            text = f"{self.name}: {what}: {error}"[:MESSAGE_MAX]
            raise ClusterError(text, cluster=self.name) from error


async def _feed_lines(
    chunks: AsyncIterator[bytes], on_event: Callable[[dict[str, Any]], None]
) -> None:
    # Split lines ourselves: aiohttp's readline refuses lines over 128 KiB, and one pod's JSON
    # (managedFields, big annotations) can be larger.
    buffer = b""
    async for chunk in chunks:
        *lines, buffer = (buffer + chunk).split(b"\n")
        for line in lines:
            if line.strip():
                on_event(json.loads(line))
    if buffer.strip():
        on_event(json.loads(buffer))


async def gather_or_raise(calls: Iterable[Coroutine[Any, Any, T]]) -> list[T]:
    """Run the calls concurrently; the first ClusterError cancels the rest and is raised."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(call) for call in calls]
    except* ClusterError as failed:
        raise failed.exceptions[0]  # noqa: B904 - it already carries its cause
    return [task.result() for task in tasks]


@asynccontextmanager
async def connect(
    target: KubeTarget, environ: Mapping[str, str] = os.environ
) -> AsyncIterator[ClusterImages]:
    api = await api_client(target, environ)
    try:
        yield ClusterImages(api, str(target))
    finally:
        await api.close()


async def list_in_use(
    targets: Sequence[KubeTarget], environ: Mapping[str, str] = os.environ
) -> InUse:
    """The sweep's one look: every cluster listed once; any failure fails it (fail closed)."""

    async def one(target: KubeTarget) -> InUse:
        async with connect(target, environ) as cluster:
            return await cluster.list_in_use()

    return InUse.merge(await gather_or_raise(one(t) for t in targets))
