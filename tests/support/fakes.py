"""Fakes at the ports: a registry in memory, and a pruner behind the receiver's scheduler."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from cleaner.errors import RegistryError, RepositoryNotFoundError
from cleaner.planning.model import (
    DeleteFailure,
    DeleteResult,
    FailureKind,
    Image,
    LifecyclePolicy,
    Repository,
    RepositoryReport,
    RunReport,
)
from cleaner.planning.references import ImageRef
from cleaner.receiver.scheduler import Scheduler
from cleaner.registries.ecr import REFERENCED_BY_INDEX, ecr_matches


@dataclass
class FakeRegistry:
    """The `Registry` port in memory, for engine tests that script failures precisely."""

    store: dict[str, list[Image]]
    """repository name -> its images"""
    fail_listing: set[str] = field(default_factory=set)
    refuse: dict[str, str] = field(default_factory=dict)
    """digest -> failure code the delete reports for it (`ImageReferencedByManifestList`
    is a refusal of kind REFERENCED, as the ECR adapter maps it)."""
    fail_batches: bool = False
    delay: float = 0.0
    calls: list[tuple[str, str, int]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    batch_limit: int = 100

    async def _enter(self) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        await asyncio.sleep(self.delay)

    def matches(self, ref: ImageRef, repository: Repository) -> bool:
        return ecr_matches(ref, repository)

    async def ping(self) -> None:
        if self.fail_listing >= set(self.store) and self.store:
            raise RegistryError(
                "DescribeRepositories: ServerException: boom", code="ServerException"
            )

    async def repositories(self) -> list[Repository]:
        return [Repository(name) for name in self.store]

    async def repository(self, name: str) -> Repository:
        if name not in self.store:
            raise RepositoryNotFoundError(f"{name} not found", code="RepositoryNotFoundException")
        return Repository(name)

    async def manifests(self, repository: Repository, digests: Sequence[str]) -> dict[str, str]:
        return {}

    async def referrers(self, repository: Repository, digest: str) -> list[str] | None:
        return None

    async def own_rules(self, repository: Repository) -> LifecyclePolicy | None:
        return None

    async def recheck(self, repository: Repository, digests: Sequence[str]) -> dict[str, Image]:
        await self._enter()
        try:
            self.calls.append(("describe", repository.name, 0))
            wanted = set(digests)
            images = self.store.get(repository.name, [])
            return {i.digest: i for i in images if i.digest in wanted}
        finally:
            self.in_flight -= 1

    async def images(self, repository: Repository) -> list[Image]:
        await self._enter()
        try:
            self.calls.append(("list", repository.name, 0))
            if repository.name in self.fail_listing:
                raise RegistryError("DescribeImages: ServerException: boom", code="ServerException")
            return list(self.store[repository.name])
        finally:
            self.in_flight -= 1

    async def delete(self, repository: Repository, digests: Sequence[str]) -> DeleteResult:
        await self._enter()
        try:
            wanted = list(digests)
            assert len(wanted) <= self.batch_limit
            self.calls.append(("delete", repository.name, len(wanted)))
            if self.fail_batches:
                raise RegistryError("BatchDeleteImage: ServerException", code="ServerException")
            failed = [_refusal(d, self.refuse[d]) for d in wanted if d in self.refuse]
            deleted = [d for d in wanted if d not in self.refuse]
            kept = [i for i in self.store[repository.name] if i.digest not in deleted]
            self.store[repository.name] = kept
            return DeleteResult(deleted=tuple(deleted), failed=tuple(failed))
        finally:
            self.in_flight -= 1


def _refusal(digest: str, code: str) -> DeleteFailure:
    kind = FailureKind.REFERENCED if code == REFERENCED_BY_INDEX else FailureKind.ERROR
    return DeleteFailure(digest, code, "refused", kind)


@dataclass
class FakePruner:
    delay: float = 0.0
    fail: bool = False
    gate: asyncio.Event | None = None
    calls: list[tuple[tuple[str, ...], bool, float]] = field(default_factory=list)
    running: int = 0
    max_running: int = 0
    finished: list[tuple[str, ...]] = field(default_factory=list)

    async def prune(self, repositories: tuple[str, ...], *, dry_run: bool) -> RunReport:
        self.calls.append((repositories, dry_run, asyncio.get_running_loop().time()))
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            if self.gate is not None:
                await self.gate.wait()
            await asyncio.sleep(self.delay)
            if self.fail:
                raise RegistryError("DescribeRepositories: boom")
            self.finished.append(repositories)
            reports = tuple(RepositoryReport(name) for name in repositories)
            return RunReport(dry_run=dry_run, repositories=reports)
        finally:
            self.running -= 1

    def per_repository(self) -> Counter[str]:
        return Counter(name for names, _, _ in self.calls for name in names)


async def until(condition: Callable[[], object], within: float = 5.0) -> float:
    """Poll state owned by someone else until `condition()` holds; returns the seconds taken."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 - no event to await: the state is not ours
            await asyncio.sleep(0.01)
    return loop.time() - start


async def settle(scheduler: Scheduler) -> None:
    """Wait until nothing is pending, queued or running."""
    await until(lambda: not (scheduler.depth or scheduler.running))
