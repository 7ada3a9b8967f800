"""The Kubernetes in-use source: what the clusters that share this registry run or will run.

Whether it is on, and which clusters it reads, comes from the policy file's `kubernetes:`
section and `protect.in_use`, with the command line's `--kubeconfig`/`--kube-context` over
both. The sweep lists every cluster once per run (`ListedKubernetes`); the receiver watches
them and reads a current snapshot on every prune (`WatchedKubernetes`).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from cleaner.clients.kubernetes import KubeTarget, config_available
from cleaner.errors import ClusterError
from cleaner.in_use.cluster import connect, list_in_use
from cleaner.in_use.watcher import InUseWatcher
from cleaner.planning.policy_file import KubernetesSection
from cleaner.planning.references import InUse
from cleaner.ports import InUseSource

log = logging.getLogger(__name__)
WATCH_SYNC_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class KubernetesOptions:
    """The effective cluster settings: command-line flags over the policy file."""

    on: bool
    targets: tuple[KubeTarget, ...]

    @classmethod
    def resolve(
        cls,
        section: KubernetesSection,
        mode: str,
        *,
        kubeconfig: str | None = None,
        contexts: Sequence[str] = (),
        environ: Mapping[str, str] = os.environ,
    ) -> KubernetesOptions:
        """`mode` is `protect.in_use`: "auto" turns the source on whenever every cluster has
        a config to load (a kubeconfig, or the in-cluster service account)."""
        path = kubeconfig or section.kubeconfig
        names = tuple(contexts) or section.contexts
        targets = tuple(KubeTarget(path, name) for name in names) or (KubeTarget(path, None),)
        if mode != "auto":
            return cls(mode == "on", targets)
        on = all(config_available(t, environ) for t in targets)
        if not on:
            log.warning("in-use protection off: no Kubernetes config found (protect.in_use: auto)")
        return cls(on, targets)


class ListedKubernetes:
    """The sweep's source: every cluster listed once, on first use; a failure is remembered."""

    name = "kubernetes"

    def __init__(self, targets: Sequence[KubeTarget]) -> None:
        self._targets = targets
        self._lock = asyncio.Lock()
        self._result: InUse | ClusterError | None = None

    async def snapshot(self) -> InUse:
        async with self._lock:
            if self._result is None:
                try:
                    self._result = await list_in_use(self._targets)
                    log.info("in use: %d image references", len(self._result))
                except ClusterError as error:
                    self._result = error
        if isinstance(self._result, ClusterError):
            raise self._result
        return self._result


class WatchedKubernetes:
    """The receiver's source: the watcher's current view (it raises while unhealthy)."""

    name = "kubernetes"

    def __init__(self, watcher: InUseWatcher) -> None:
        self._watcher = watcher

    async def snapshot(self) -> InUse:
        return self._watcher.snapshot()


@asynccontextmanager
async def open_source(
    options: KubernetesOptions, *, watch: bool
) -> AsyncIterator[InUseSource | None]:
    """The source for these options, watched (receiver) or listed (sweep); None when off."""
    if not options.on:
        yield None
        return
    if not watch:
        yield ListedKubernetes(options.targets)
        return
    async with AsyncExitStack() as stack:
        clusters = [await stack.enter_async_context(connect(t)) for t in options.targets]
        watcher = await stack.enter_async_context(InUseWatcher(clusters))
        await _first_sync(watcher)
        yield WatchedKubernetes(watcher)


async def _first_sync(watcher: InUseWatcher) -> None:
    """Start serving even if a cluster is slow: prunes fail closed until it has synced."""
    try:
        await watcher.wait_synced(WATCH_SYNC_TIMEOUT_S)
    except ClusterError as error:
        log.error("in-use watch not synced yet, prunes will fail closed: %s", error)
