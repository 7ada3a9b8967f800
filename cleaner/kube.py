"""Wires the Kubernetes adapters into the engine: in-use sources and Lease coordination.

Decides, from the policy file and the command line, whether in-use protection is on and
which clusters it reads, and whether prunes coordinate through Leases. The engine only sees
the two small ports it defines (`InUseSource`, `Coordinator`).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from kubernetes_asyncio import client

from cleaner.coordination.lease import default_holder, repository_lease
from cleaner.engine.core import Coordinator, InUseSource
from cleaner.errors import ClusterError
from cleaner.in_use.kubernetes import KubeTarget, api_client, config_available, connect, in_cluster
from cleaner.in_use.kubernetes import list_in_use as list_clusters
from cleaner.in_use.watcher import InUseWatcher
from cleaner.planning.policy_file import ClusterSettings
from cleaner.planning.references import InUse

log = logging.getLogger(__name__)
NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
WATCH_SYNC_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class KubeOptions:
    """The effective cluster settings: command-line flags over the policy file."""

    in_use: bool
    targets: tuple[KubeTarget, ...]
    lease_namespace: str | None
    lease_seconds: int


def resolve(
    settings: ClusterSettings,
    *,
    kubeconfig: str | None = None,
    contexts: Sequence[str] = (),
    environ: Mapping[str, str] = os.environ,
) -> KubeOptions:
    path = kubeconfig or settings.kubeconfig
    names = tuple(contexts) or settings.contexts
    targets = tuple(KubeTarget(path, name) for name in names) or (KubeTarget(path, None),)
    if settings.in_use == "auto":
        on = all(config_available(t, environ) for t in targets)
        if not on:
            log.warning("in-use protection off: no Kubernetes config found (protect.in_use: auto)")
    else:
        on = settings.in_use == "on"
    namespace = settings.lease_namespace or _own_namespace(environ)
    return KubeOptions(on, targets, namespace, settings.lease_seconds)


def _own_namespace(environ: Mapping[str, str]) -> str | None:
    """In a pod, coordinate in its own namespace; outside a cluster, do not coordinate."""
    if not in_cluster(environ):
        return None
    try:
        return NAMESPACE_FILE.read_text().strip() or None
    except OSError:
        return None


class ListedInUse:
    """The sweep's source: every cluster listed once, on first use; a failure is remembered."""

    def __init__(self, targets: Sequence[KubeTarget]) -> None:
        self._targets = targets
        self._lock = asyncio.Lock()
        self._result: InUse | ClusterError | None = None

    async def snapshot(self) -> InUse:
        async with self._lock:
            if self._result is None:
                try:
                    self._result = await list_clusters(self._targets)
                    log.info("in use: %d image references", len(self._result))
                except ClusterError as error:
                    self._result = error
        if isinstance(self._result, ClusterError):
            raise self._result
        return self._result


class WatchedInUse:
    """The receiver's source: the watcher's current view (it raises while unhealthy)."""

    def __init__(self, watcher: InUseWatcher) -> None:
        self._watcher = watcher

    async def snapshot(self) -> InUse:
        return self._watcher.snapshot()


class LeaseCoordinator:
    def __init__(self, api: client.ApiClient, namespace: str, duration_s: int) -> None:
        self._api, self._namespace, self._duration_s = api, namespace, duration_s
        self._holder = default_holder()

    def hold(self, repository: str) -> AbstractAsyncContextManager[object]:
        return repository_lease(
            self._api, self._namespace, repository, self._holder, duration_s=self._duration_s
        )


@asynccontextmanager
async def cluster_ports(
    options: KubeOptions, *, watch: bool, coordinate: bool = True
) -> AsyncIterator[tuple[InUseSource | None, Coordinator | None]]:
    """The engine's in-use source and coordinator for these options (either may be None).

    `coordinate=False` (a plan or a dry run: nothing will be deleted) skips the Lease client.
    """
    async with AsyncExitStack() as stack:
        source: InUseSource | None = None
        if options.in_use and watch:
            clusters = [await stack.enter_async_context(connect(t)) for t in options.targets]
            watcher = await stack.enter_async_context(InUseWatcher(clusters))
            await _first_sync(watcher)
            source = WatchedInUse(watcher)
        elif options.in_use:
            source = ListedInUse(options.targets)
        coordinator: Coordinator | None = None
        if options.lease_namespace and coordinate:
            api = await api_client(options.targets[0])
            stack.push_async_callback(api.close)
            coordinator = LeaseCoordinator(api, options.lease_namespace, options.lease_seconds)
            log.info("coordinating prunes through Leases in namespace %s", options.lease_namespace)
        yield source, coordinator


async def _first_sync(watcher: InUseWatcher) -> None:
    """Start serving even if a cluster is slow: prunes fail closed until it has synced."""
    try:
        await watcher.wait_synced(WATCH_SYNC_TIMEOUT_S)
    except ClusterError as error:
        log.error("in-use watch not synced yet, prunes will fail closed: %s", error)
