"""An in-memory Registry for engine tests that need to script failures precisely."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field

from cleaner.errors import RegistryError, RepositoryNotFoundError
from cleaner.planning.model import DeleteFailure, DeleteResult, Image, Repository


@dataclass
class FakeRegistry:
    images: dict[str, list[Image]]
    fail_listing: set[str] = field(default_factory=set)
    refuse: dict[str, str] = field(default_factory=dict)
    """digest -> failure code BatchDeleteImage reports for it."""
    fail_batches: bool = False
    delay: float = 0.0
    calls: list[tuple[str, str, int]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0

    async def _enter(self) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        await asyncio.sleep(self.delay)

    async def list_repositories(self) -> list[Repository]:
        return [Repository(name) for name in self.images]

    async def get_manifests(self, repository: str, digests: Iterable[str]) -> dict[str, str]:
        return {}

    async def list_referrers(self, repository: str, digest: str) -> list[str] | None:
        return None

    async def get_lifecycle_policy(self, repository: str) -> str | None:
        return None

    async def describe_images(self, repository: str, digests: Iterable[str]) -> dict[str, Image]:
        await self._enter()
        try:
            self.calls.append(("describe", repository, 0))
            wanted = set(digests)
            return {i.digest: i for i in self.images.get(repository, []) if i.digest in wanted}
        finally:
            self.in_flight -= 1

    async def list_images(self, repository: str) -> list[Image]:
        await self._enter()
        try:
            self.calls.append(("list", repository, 0))
            if repository not in self.images:
                raise RepositoryNotFoundError(f"{repository} not found")
            if repository in self.fail_listing:
                raise RegistryError("DescribeImages: ServerException: boom", code="ServerException")
            return list(self.images[repository])
        finally:
            self.in_flight -= 1

    async def delete_images(self, repository: str, digests: Iterable[str]) -> DeleteResult:
        await self._enter()
        try:
            wanted = list(digests)
            assert len(wanted) <= 100
            self.calls.append(("delete", repository, len(wanted)))
            if self.fail_batches:
                raise RegistryError("BatchDeleteImage: ServerException", code="ServerException")
            failed = [
                DeleteFailure(d, self.refuse[d], "refused") for d in wanted if d in self.refuse
            ]
            deleted = [d for d in wanted if d not in self.refuse]
            self.images[repository] = [
                i for i in self.images[repository] if i.digest not in deleted
            ]
            return DeleteResult(deleted=tuple(deleted), failed=tuple(failed))
        finally:
            self.in_flight -= 1
