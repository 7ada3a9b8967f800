"""One prune per repository at a time, across receiver replicas and the CronJob.

A `coordination.k8s.io/v1` Lease named from the repository: acquired (or taken over once
expired), renewed while the prune runs, released after. Every write is a replace carrying the
resourceVersion we read, so a 409 means someone else wrote first: we re-read and decide again,
never blindly retry. kubernetes-asyncio's `leaderelection` is built for one long-lived leader,
not a bounded wait per repository, hence this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import secrets
import socket
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client

from cleaner.clients.kubernetes import KubeTarget, api_client, call_json, in_cluster, json_object
from cleaner.errors import ClusterError, LeaseBusy, LeaseLost

log = logging.getLogger(__name__)

NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
PREFIX = "ecr-cleaner-"
REPOSITORY_ANNOTATION = "ecr-cleaner/repository"
FIRST_POLL_S = 0.25
API_VERSION = "coordination.k8s.io/v1"


def lease_name(repository: str) -> str:
    """A valid DNS-1123 name, readable, and unique through a hash of the full name."""
    slug = re.sub(r"[^a-z0-9]+", "-", repository.lower()).strip("-")[:40].rstrip("-")
    digest = hashlib.sha256(repository.encode()).hexdigest()[:10]
    return f"{PREFIX}{slug}-{digest}" if slug else f"{PREFIX}{digest}"


def default_holder() -> str:
    """The pod name (HOSTNAME), plus a random suffix: two processes in one pod differ too."""
    host = os.environ.get("HOSTNAME") or socket.gethostname()
    return f"{host}-{secrets.token_hex(4)}"


def _now() -> datetime:
    return datetime.now(UTC)


def _micro_time(moment: datetime) -> str:
    # MicroTime: the API server wants exactly six fractional digits and a Z.
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _expired(spec: dict[str, Any], now: datetime) -> bool:
    """renewTime + leaseDurationSeconds < now (wall clocks: keep nodes in NTP sync)."""
    try:
        renewed = datetime.fromisoformat(str(spec.get("renewTime")))
        duration = timedelta(seconds=int(spec.get("leaseDurationSeconds") or 0))
    except (TypeError, ValueError):
        return True  # no readable renewTime: nobody can be relying on it
    return renewed.replace(tzinfo=renewed.tzinfo or UTC) + duration < now


class RepositoryLease:
    """The Lease of one repository, as one holder sees it."""

    def __init__(
        self, api: client.ApiClient, namespace: str, repository: str, holder: str, duration_s: int
    ) -> None:
        self.leases = client.CoordinationV1Api(api)
        self.namespace, self.repository, self.holder = namespace, repository, holder
        self.name = lease_name(repository)
        self.duration_s = max(1, duration_s)
        self.current: dict[str, Any] = {}
        """The Lease as we last read or wrote it: its resourceVersion guards our next write."""
        self.lost = False

    async def acquire(self, wait_s: float) -> None:
        """Take the Lease, waiting with backoff up to `wait_s`; LeaseBusy after that."""
        loop = asyncio.get_running_loop()
        deadline, delay = loop.time() + wait_s, FIRST_POLL_S
        while True:
            other = await self._try_acquire()
            if other is None:
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise LeaseBusy(self.repository, other)
            log.info("%s: lease held by %s; waiting", self.repository, other)
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, self.duration_s / 3)

    async def _try_acquire(self) -> str | None:
        """None when we hold the Lease now; otherwise who holds it."""
        lease = await self._read()
        spec = json_object(lease.get("spec")) if lease else {}
        holder = spec.get("holderIdentity")
        if lease and holder and holder != self.holder and not _expired(dict(spec), _now()):
            return str(holder)
        if holder and holder != self.holder:
            log.warning("%s: taking over the expired lease of %s", self.repository, holder)
        moved = holder != self.holder
        try:
            await (self._replace(lease, acquired=moved) if lease else self._create())
        except ClusterError as error:
            if error.status != 409:
                raise
            return "a concurrent writer (409 Conflict)"  # it won the race: the next read says who
        return None

    async def renew(self) -> bool:
        """Push renewTime forward; False if the Lease is no longer ours."""
        try:
            await self._replace(self.current)
            return True
        except ClusterError as error:
            if error.status != 409:
                raise
        lease = await self._read()  # someone else wrote: still ours (e.g. a label edit)?
        if lease is None or not self._ours(lease):
            return False
        await self._replace(lease)
        return True

    async def release(self) -> None:
        """Clear the holder so the next prune need not wait for expiry. Best effort."""
        try:
            try:
                await self._replace(self.current, release=True)
            except ClusterError as error:
                lease = await self._read() if error.status == 409 else None
                if lease is None or not self._ours(lease):
                    raise
                await self._replace(lease, release=True)  # our own renewal raced the release
        except ClusterError as error:
            log.warning("%s: lease not released, it will expire: %s", self.repository, error)

    async def keep_renewed(self, body: asyncio.Task[Any]) -> None:
        """Renew every third of the duration; cancel `body` once the Lease is lost."""
        loop = asyncio.get_running_loop()
        renewed = loop.time()
        while True:
            await asyncio.sleep(self.duration_s / 3)
            try:
                ours = await self.renew()
            except ClusterError as error:  # transient: try again until the Lease would lapse
                log.warning("%s: lease renewal failed: %s", self.repository, error)
                ours = loop.time() - renewed < self.duration_s * 2 / 3
            else:
                renewed = loop.time() if ours else renewed
            if not ours:
                log.error("%s: lease lost; stopping the prune", self.repository)
                self.lost = True
                body.cancel()
                return

    async def _read(self) -> dict[str, Any] | None:
        try:
            return await self._call("read", self.leases.read_namespaced_lease, name=self.name)
        except ClusterError as error:
            if error.status == 404:
                return None
            raise

    async def _create(self) -> None:
        body = self._body({}, holder=self.holder, acquired=True)
        self.current = await self._call("create", self.leases.create_namespaced_lease, body=body)

    async def _replace(
        self, lease: dict[str, Any], *, release: bool = False, acquired: bool = False
    ) -> None:
        body = self._body(lease, holder=None if release else self.holder, acquired=acquired)
        replace = self.leases.replace_namespaced_lease
        self.current = await self._call("update", replace, name=self.name, body=body)

    def _body(
        self, lease: dict[str, Any], *, holder: str | None, acquired: bool = False
    ) -> dict[str, Any]:
        """The Lease to write: its metadata (with the resourceVersion read) kept, spec updated."""
        now = _micro_time(_now())
        meta = dict(json_object(lease.get("metadata")))
        notes = {**json_object(meta.get("annotations")), REPOSITORY_ANNOTATION: self.repository}
        meta.update(name=self.name, namespace=self.namespace, annotations=notes)
        spec = dict(json_object(lease.get("spec")))
        spec.update(holderIdentity=holder, leaseDurationSeconds=self.duration_s, renewTime=now)
        if acquired:
            moves = int(spec.get("leaseTransitions") or 0) + (1 if lease else 0)
            spec.update(acquireTime=now, leaseTransitions=moves)
        return {"apiVersion": API_VERSION, "kind": "Lease", "metadata": meta, "spec": spec}

    def _ours(self, lease: dict[str, Any]) -> bool:
        return json_object(lease.get("spec")).get("holderIdentity") == self.holder

    async def _call(self, verb: str, method: Any, **params: Any) -> dict[str, Any]:
        call = method(namespace=self.namespace, _preload_content=False, **params)
        what = f"{verb} lease {self.namespace}/{self.name}"
        return await call_json(call, cluster="leases", what=what)


@contextlib.asynccontextmanager
async def repository_lease(
    api: client.ApiClient,
    namespace: str,
    repository: str,
    holder: str,
    *,
    duration_s: int = 60,
    wait_s: float = 120.0,
) -> AsyncIterator[RepositoryLease]:
    """Hold the repository's Lease for the body; LeaseBusy if it stays taken for `wait_s`.

    The body is cancelled, and LeaseLost raised, if the Lease cannot be renewed in time:
    past that point another prune may already have taken it over.
    """
    lease = RepositoryLease(api, namespace, repository, holder, duration_s)
    await lease.acquire(wait_s)
    body = asyncio.current_task()
    assert body is not None  # noqa: S101 - an async context manager always runs in a task
    cancelling = body.cancelling()
    renewer = asyncio.create_task(lease.keep_renewed(body), name=f"renew {lease.name}")
    try:
        yield lease
    except asyncio.CancelledError:
        # Our own cancel (see keep_renewed) becomes LeaseLost; anyone else's propagates.
        if lease.lost and body.uncancel() <= cancelling:
            raise LeaseLost(f"{repository}: lease {lease.name} lost while pruning") from None
        raise
    finally:
        renewer.cancel()
        await asyncio.wait([renewer])
        if not lease.lost:
            await lease.release()


class LeaseCoordinator:
    """The `Coordinator` port over Leases: one holder identity for the process."""

    def __init__(self, api: client.ApiClient, namespace: str, duration_s: int) -> None:
        self._api, self._namespace, self._duration_s = api, namespace, duration_s
        self._holder = default_holder()

    def hold(self, repository: str) -> AbstractAsyncContextManager[object]:
        return repository_lease(
            self._api, self._namespace, repository, self._holder, duration_s=self._duration_s
        )


def lease_namespace(configured: str | None, environ: Mapping[str, str] = os.environ) -> str | None:
    """The policy's namespace; else, in a pod, its own; outside a cluster, None: no Leases."""
    if configured:
        return configured
    if not in_cluster(environ):
        return None
    try:
        return NAMESPACE_FILE.read_text().strip() or None
    except OSError:
        return None


@contextlib.asynccontextmanager
async def open_coordinator(
    target: KubeTarget, namespace: str, duration_s: int
) -> AsyncIterator[LeaseCoordinator]:
    api = await api_client(target)
    try:
        log.info("coordinating prunes through Leases in namespace %s", namespace)
        yield LeaseCoordinator(api, namespace, duration_s)
    finally:
        await api.close()
