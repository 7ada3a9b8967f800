"""One cluster's workloads through kubernetes-asyncio: listed once, or watched.

Lists and watches raw JSON (`_preload_content=False`): deserialising thousands of pods into
client models is slow, and one extractor then serves both list items and watch events.
Every library failure leaves this module as `ClusterError`, raised `from` the original.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import aiohttp
from kubernetes_asyncio import client

from cleaner.clients.kubernetes import (
    MESSAGE_MAX,
    REQUEST_TIMEOUT_S,
    TRANSPORT_ERRORS,
    KubeTarget,
    api_client,
    call_json,
    http_error,
    json_object,
    json_objects,
)
from cleaner.errors import ClusterError
from cleaner.in_use.workloads import KINDS, Kind, Objects, object_key, workload_uses
from cleaner.planning.references import InUse

PAGE_SIZE = 500
T = TypeVar("T")


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
        except (*TRANSPORT_ERRORS, ValueError) as error:
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
