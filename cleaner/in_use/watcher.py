"""The receiver's in-use set, kept current by informer-style list + watch of every cluster.

The sweep lists once per run (`kubernetes.list_in_use`); a long-running receiver would list
the whole cluster on every push, so it watches instead and reads a snapshot. A watch that
fails makes the watcher unhealthy, and `snapshot()` then raises: a caller cannot prune blind
by forgetting to check.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from cleaner.clients.kubernetes import http_error, json_object
from cleaner.errors import ClusterError
from cleaner.in_use.cluster import ClusterImages
from cleaner.in_use.workloads import KINDS, Kind, Objects, object_key, workload_uses
from cleaner.planning.references import InUse

log = logging.getLogger(__name__)


class _Reflector:
    """One cluster's objects of one kind, kept current by list + watch (client-go's name)."""

    def __init__(self, cluster: ClusterImages, kind: Kind, watch_timeout_s: int) -> None:
        self.cluster, self.kind, self.watch_timeout_s = cluster, kind, watch_timeout_s
        self.objects: Objects = {}
        self.since = ""
        self.version = 0
        """Bumped on every change, so a snapshot is rebuilt only when something changed."""
        self.listed_at = 0.0
        self.failures = 0
        self.synced = asyncio.Event()
        self.error: ClusterError | None = None

    def __str__(self) -> str:
        return f"{self.cluster.name}: {self.kind.name}s"

    async def list_and_watch(self) -> None:
        """List, then watch until the server says the version expired (410): then return."""
        self.listed_at = asyncio.get_running_loop().time()
        self.objects, self.since = await self.cluster.list_kind(self.kind)
        self.version += 1
        self.error, self.failures = None, 0
        self.synced.set()
        try:
            while True:  # a watch the server ended resumes from the last version seen
                await self.cluster.watch_kind(
                    self.kind, self.since, self.watch_timeout_s, self.apply
                )
        except ClusterError as error:
            if error.status != 410:
                raise

    def apply(self, event: dict[str, Any]) -> None:
        kind, obj = event.get("type"), json_object(event.get("object"))
        if kind == "ERROR":  # 410 Gone here means: relist
            code = obj.get("code")
            status = code if isinstance(code, int) else 0
            raise http_error(self.cluster.name, f"watch {self.kind.name}s", status, obj)
        self.since = str(json_object(obj.get("metadata")).get("resourceVersion") or self.since)
        if kind in ("ADDED", "MODIFIED"):
            self.objects[object_key(obj)] = workload_uses(self.kind.name, obj)
        elif kind == "DELETED":
            self.objects.pop(object_key(obj), None)
        else:
            return  # BOOKMARK: only the resourceVersion moves
        self.version += 1


class InUseWatcher:
    """The receiver's InUse, kept current by informer-style list + watch of every cluster.

    `snapshot()` raises ClusterError until every cluster and kind has listed once and while
    any of them is failing, so a caller cannot prune on a partial or stale view.
    """

    def __init__(
        self,
        clusters: Sequence[ClusterImages],
        *,
        watch_timeout_s: int = 300,
        retry_s: float = 1.0,
        max_retry_s: float = 60.0,
    ) -> None:
        self._reflectors = [_Reflector(c, k, watch_timeout_s) for c in clusters for k in KINDS]
        self._retry_s, self._max_retry_s = retry_s, max_retry_s
        self._tasks: list[asyncio.Task[None]] = []
        self._cache: tuple[int, InUse] = (-1, InUse())

    async def __aenter__(self) -> InUseWatcher:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run(r), name=str(r)) for r in self._reflectors]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def wait_synced(self, timeout_s: float) -> None:
        """Wait for the first full list of everything; ClusterError after `timeout_s`."""
        try:
            async with asyncio.timeout(timeout_s):
                await asyncio.gather(*(r.synced.wait() for r in self._reflectors))
        except TimeoutError:
            why = self.last_error or "no answer yet"
            raise ClusterError(f"clusters not listed after {timeout_s}s: {why}") from None

    @property
    def healthy(self) -> bool:
        return all(r.synced.is_set() and r.error is None for r in self._reflectors)

    @property
    def last_error(self) -> str | None:
        return next((str(r.error) for r in self._reflectors if r.error is not None), None)

    def snapshot(self) -> InUse:
        if not self.healthy:
            raise ClusterError(f"in-use set unavailable: {self.last_error or 'not listed yet'}")
        version = sum(r.version for r in self._reflectors)  # versions only grow
        if self._cache[0] != version:
            uses = (u for r in self._reflectors for us in r.objects.values() for u in us)
            self._cache = (version, InUse.of(uses))
        return self._cache[1]

    async def _run(self, reflector: _Reflector) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                await reflector.list_and_watch()
                # The watch expired: relist, still healthy, but at most once per retry_s.
                await asyncio.sleep(max(0.0, reflector.listed_at + self._retry_s - loop.time()))
            except ClusterError as error:
                await self._failed(reflector, error)
            except Exception as error:  # a dead task would look healthy forever: fail closed
                log.exception("%s: unexpected error; relisting", reflector)
                await self._failed(reflector, ClusterError(f"{reflector}: {error!r}"))

    async def _failed(self, reflector: _Reflector, error: ClusterError) -> None:
        """Unhealthy (fail closed) until the next list succeeds; back off meanwhile."""
        reflector.error, reflector.failures = error, reflector.failures + 1
        log.warning("%s: %s; relisting", reflector, error)
        backoff = self._retry_s * 2 ** (reflector.failures - 1)
        await asyncio.sleep(min(backoff, self._max_retry_s))
