"""The seams the engine and the receiver depend on, each documented once.

The engine never names a registry, a cluster or a transport: it holds one `Registry`, one
`InUseSource` (the merged source, when several are configured), and optionally one
`Coordinator`. Ingress edges (HTTP today) hand what they receive to an `Intake` and map its
`Answer` to their own protocol. Adapters implement these structurally; `cleaner.wiring` is
the one place that picks and opens them.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from cleaner.planning.model import DeleteResult, Image, LifecyclePolicy, Repository
from cleaner.planning.references import ImageRef, InUse

AuditSink = Callable[[dict[str, Any]], None]
"""Receives one JSON-ready record per audit event (an intent, a deletion)."""


class Registry(Protocol):
    """One registry's repositories and images.

    Pagination, batching below `batch_limit`, retries and pacing are the adapter's business;
    every failure leaves it as `cleaner.errors.RegistryError`. `Image.pushed_at` is the
    adapter's to define (ECR: the push time it records) and its docstring says where from.
    """

    batch_limit: int
    """Most digests `recheck` and `delete` take in one call."""

    def matches(self, ref: ImageRef, repository: Repository) -> bool:
        """Does the image reference `ref` (as a workload names it) point into `repository`?

        ECR: any of the registry's endpoints (standard, FIPS, dualstack) with the
        repository's path. Over-matching only keeps more; under-matching would delete an
        image something runs.
        """
        ...

    async def ping(self) -> None:
        """One cheap call that proves the registry answers; RegistryError when it does not."""
        ...

    async def repositories(self) -> list[Repository]:
        """Every repository these credentials can see."""
        ...

    async def repository(self, name: str) -> Repository:
        """One repository by name, with its URI; `RepositoryNotFoundError` when absent."""
        ...

    async def images(self, repository: Repository) -> list[Image]:
        """Every image (manifest) the repository holds now."""
        ...

    async def recheck(self, repository: Repository, digests: Sequence[str]) -> dict[str, Image]:
        """The current state of up to `batch_limit` digests; the absent ones are gone."""
        ...

    async def manifests(self, repository: Repository, digests: Sequence[str]) -> dict[str, str]:
        """Manifest text by digest, any count; digests it cannot return are absent."""
        ...

    async def referrers(self, repository: Repository, digest: str) -> list[str] | None:
        """Digests of the OCI referrers of `digest`; None when the registry cannot say."""
        ...

    async def delete(self, repository: Repository, digests: Sequence[str]) -> DeleteResult:
        """Delete up to `batch_limit` digests; the result covers every requested digest.

        A refusal because an index still references the image is a failure of kind
        `FailureKind.REFERENCED`, whatever the registry calls it.
        """
        ...

    async def own_rules(self, repository: Repository) -> LifecyclePolicy | None:
        """The registry's own lifecycle rules for the repository (`rules: ecr`), or None."""
        ...


class InUseSource(Protocol):
    """Where the images that workloads run, or will run, come from."""

    name: str
    """Names the source in errors and logs: `kubernetes`, `ecs:123456789012/eu-west-1`."""

    async def snapshot(self) -> InUse:
        """Every reference in use now. Raises `cleaner.errors.InUseError` when it cannot
        tell: callers then delete nothing (fail closed)."""
        ...


class Coordinator(Protocol):
    """Mutual exclusion per repository across processes (a Kubernetes Lease today)."""

    def hold(self, repository: str) -> AbstractAsyncContextManager[object]:
        """Hold the repository for the body; raises a `CleanerError` when it cannot."""
        ...


class Status(enum.StrEnum):
    """What an intake did with one delivery."""

    ACCEPTED = "accepted"
    """A new prune is pending for the repository."""
    COALESCED = "coalesced"
    """The repository already had a pending prune; this delivery rides on it."""
    DUPLICATE = "duplicate"
    """The delivery's id was seen recently (at-least-once delivery); nothing to do."""
    IGNORED = "ignored"
    """Well formed, but it asks for nothing here (another event, account or region)."""


@dataclass(frozen=True, slots=True)
class Answer:
    """The intake's answer to one delivery, for the edge to map to its protocol."""

    status: Status
    id: str
    repository: str | None = None
    reason: str | None = None
    """Why it was ignored."""
    settled: asyncio.Future[bool] | None = None
    """For accepted and coalesced deliveries: resolves to True once the prune it rides on
    finished without failures, False when it failed; cancelled at shutdown. An edge that
    acknowledges only finished work (a queue) waits on it; HTTP answers at once."""


class Intake(Protocol):
    """What an ingress edge hands a delivery to.

    Raises `cleaner.errors.InvalidRequest` for a body that cannot be acted on, and
    `cleaner.errors.Rejected` (with `retry_after`) when no work can be taken now.
    """

    def submit(self, body: bytes) -> Answer: ...
