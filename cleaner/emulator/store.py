"""In-memory ECR registry state with ECR's documented semantics (the API reference, "How
lifecycle policies work" on manifest lists, and "Deleting an image" on OCI referrers).

No HTTP here: the server turns requests into these calls, and tests, the demo and the
benchmarks seed state directly through the same methods (no wire round trips).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cleaner.emulator import manifests
from cleaner.emulator.manifests import make_manifest
from cleaner.emulator.paging import SeqIndex
from cleaner.emulator.validation import (
    IMAGE_NOT_FOUND,
    EcrError,
    ImageFailure,
    ImageId,
    check_image_id,
    check_repository_name,
    check_tag,
)
from cleaner.planning.model import Image


@dataclass(slots=True)
class StoredImage:
    digest: str
    manifest: str
    info: manifests.ManifestInfo
    pushed_at: datetime
    tags: list[str] = field(default_factory=list)
    last_pulled_at: datetime | None = None
    seq: int = 0


@dataclass(slots=True)
class RepositoryState:
    name: str
    created_at: datetime
    tag_mutability: str = "MUTABLE"
    images: dict[str, StoredImage] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    parents: dict[str, set[str]] = field(default_factory=dict)
    """Child digest -> digests of the indexes in this repository that list it."""
    referrers: dict[str, dict[str, None]] = field(default_factory=dict)
    """Subject digest -> referrer digests in push order (an ordered set)."""
    order: SeqIndex = field(default_factory=SeqIndex)
    policy: str | None = None

    def size_of(self, image: StoredImage) -> int:
        """ECR: an index's size is the max of its manifests' sizes (botocore ImageDetail)."""
        if not image.info.children:
            return image.info.size
        present = (self.images.get(c) for c in image.info.children)
        return max((i.info.size for i in present if i is not None), default=0)


class RegistryStore:
    """One registry (account + region) of repositories; every method is synchronous."""

    make_manifest = staticmethod(make_manifest)

    def __init__(
        self,
        account_id: str = "123456789012",
        region: str = "us-east-1",
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.account_id = account_id
        self.region = region
        self.clock = clock or (lambda: datetime.now(UTC))
        self.calls: Counter[str] = Counter()
        """Operation name -> requests the server received (seeding does not count)."""
        self.rejected: Counter[str] = Counter()
        """`ThrottlingException:<op>` / `ServerException:<op>` -> injected failures."""
        self.repos: dict[str, RepositoryState] = {}
        self.repo_order = SeqIndex()

    # -- repositories -------------------------------------------------------------------

    def create_repository(
        self, name: str, *, tag_mutability: str = "MUTABLE", created_at: datetime | None = None
    ) -> None:
        check_repository_name(name)
        if name in self.repos:
            raise EcrError(
                "RepositoryAlreadyExistsException",
                f"The repository with name '{name}' already exists in the registry with id "
                f"'{self.account_id}'",
            )
        self.repos[name] = RepositoryState(name, created_at or self.clock(), tag_mutability)
        self.repo_order.add(name)

    def delete_repository(self, name: str, *, force: bool = False) -> RepositoryState:
        repo = self.repository(name)
        if repo.images and not force:
            raise EcrError(
                "RepositoryNotEmptyException",
                f"The repository with name '{name}' in registry with id '{self.account_id}' "
                "cannot be deleted because it still contains images",
            )
        del self.repos[name]
        self.repo_order.remove(name)
        return repo

    def repository(self, name: str, registry_id: str | None = None) -> RepositoryState:
        repo = self.repos.get(name) if registry_id in (None, self.account_id) else None
        if repo is None:
            check_repository_name(name)
            raise EcrError(
                "RepositoryNotFoundException",
                f"The repository with name '{name}' does not exist in the registry with id "
                f"'{registry_id or self.account_id}'",
            )
        return repo

    # -- pushing ------------------------------------------------------------------------

    def put_image(
        self,
        repository: str,
        manifest: str,
        *,
        media_type: str | None = None,
        tag: str | None = None,
        pushed_at: datetime | None = None,
        digest: str | None = None,
    ) -> str:
        """ECR PutImage: returns the digest; a tag held by another image moves here."""
        repo = self.repository(repository)
        try:
            info = manifests.parse_manifest(manifest, media_type)
        except ValueError as e:
            raise EcrError("InvalidParameterException", str(e)) from None
        computed = manifests.digest_of(manifest)
        if digest is not None and digest != computed:
            raise EcrError(
                "ImageDigestDoesNotMatchException",
                f"Invalid parameter at 'imageDigest': '{digest}' does not match the digest "
                f"of the manifest '{computed}'",
            )
        existing = repo.images.get(computed)
        if existing is not None and (tag is None or tag in existing.tags):
            raise EcrError(
                "ImageAlreadyExistsException",
                f"Image with digest '{computed}' and tag '{tag or 'null'}' already exists in "
                f"the repository with name '{repository}' in registry with id "
                f"'{self.account_id}'",
            )
        self._check_tag(repo, tag)
        if existing is None:
            self._check_children(repo, info)
            text = str(manifest)  # a plain copy: the builders' Manifest subclass has a __dict__
            self._insert(repo, StoredImage(computed, text, info, pushed_at or self.clock()))
        if tag is not None:
            self._move_tag(repo, tag, computed)
        return computed

    def add_tag(self, repository: str, digest: str, tag: str) -> None:
        """Point `tag` at an existing image (PutImage of the same manifest with a new tag)."""
        repo = self.repository(repository)
        image = repo.images.get(digest)
        if image is None:
            raise self.image_not_found(repo, {"imageDigest": digest})
        self.put_image(repository, image.manifest, media_type=image.info.media_type, tag=tag)

    def record_pull(self, repository: str, digest: str, at: datetime | None = None) -> None:
        """Set lastRecordedPullTime (ECR refreshes it about once a day; tests set it here)."""
        self.repository(repository).images[digest].last_pulled_at = at or self.clock()

    def _check_tag(self, repo: RepositoryState, tag: str | None) -> None:
        if tag is None:
            return
        check_tag(tag)
        if repo.tag_mutability.startswith("IMMUTABLE") and tag in repo.tags:
            raise EcrError(
                "ImageTagAlreadyExistsException",
                f"The image tag '{tag}' already exists in the '{repo.name}' repository and "
                "cannot be overwritten because the repository is immutable.",
            )

    def _check_children(self, repo: RepositoryState, info: manifests.ManifestInfo) -> None:
        missing = [c for c in info.children if c not in repo.images]
        if missing:
            raise EcrError(
                "ReferencedImagesNotFoundException",
                f"The manifest list is referencing images that do not exist: {missing}",
            )

    def _insert(self, repo: RepositoryState, image: StoredImage) -> None:
        image.seq = repo.order.add(image.digest)
        repo.images[image.digest] = image
        for child in image.info.children:
            repo.parents.setdefault(child, set()).add(image.digest)
        if image.info.subject:
            repo.referrers.setdefault(image.info.subject, {})[image.digest] = None

    def _move_tag(self, repo: RepositoryState, tag: str, digest: str) -> None:
        # The previous holder keeps existing; with no tags left it is simply untagged.
        old = repo.tags.get(tag)
        if old is not None:
            repo.images[old].tags.remove(tag)
        repo.tags[tag] = digest
        repo.images[digest].tags.append(tag)

    # -- deleting -----------------------------------------------------------------------

    def batch_delete(
        self, repository: str, image_ids: list[ImageId]
    ) -> tuple[list[dict[str, str]], list[dict[str, Any]]]:
        """BatchDeleteImage, processing ids in request order: (imageIds, failures)."""
        repo = self.repository(repository)
        deleted: list[dict[str, str]] = []
        failures: list[dict[str, Any]] = []
        for image_id in image_ids:
            try:
                deleted.extend(self._delete_one(repo, image_id))
            except ImageFailure as f:
                failures.append(
                    {"imageId": dict(image_id), "failureCode": f.code, "failureReason": f.reason}
                )
        return deleted, failures

    def _delete_one(self, repo: RepositoryState, image_id: ImageId) -> list[dict[str, str]]:
        check_image_id(image_id)
        digest, tag = image_id.get("imageDigest"), image_id.get("imageTag")
        if tag:
            return self._untag(repo, tag, digest)
        image = repo.images.get(digest or "")
        if image is None:
            raise ImageFailure("ImageNotFound", IMAGE_NOT_FOUND)
        self._guard_child(repo, image.digest)
        self._remove(repo, image)
        return [{"imageDigest": image.digest, "imageTag": t} for t in image.tags] or [
            {"imageDigest": image.digest}
        ]

    def _untag(self, repo: RepositoryState, tag: str, digest: str | None) -> list[dict[str, str]]:
        # A tag (optionally checked against a digest) removes only that tag; the image goes
        # with its last tag (BatchDeleteImage docs).
        held = repo.tags.get(tag)
        if held is None:
            raise ImageFailure("ImageNotFound", IMAGE_NOT_FOUND)
        if digest and held != digest:
            raise ImageFailure(
                "ImageTagDoesNotMatchDigest",
                "Invalid request parameters: given tag does not map to digest",
            )
        image = repo.images[held]
        if image.tags == [tag]:
            self._guard_child(repo, held)
            self._remove(repo, image)
        else:
            image.tags.remove(tag)
            del repo.tags[tag]
        return [{"imageDigest": held, "imageTag": tag}]

    def _guard_child(self, repo: RepositoryState, digest: str) -> None:
        parents = repo.parents.get(digest)
        if parents:
            raise ImageFailure(
                "ImageReferencedByManifestList",
                f"Requested image referenced by manifest list: {sorted(parents)}",
            )

    def _remove(self, repo: RepositoryState, image: StoredImage) -> None:
        # Referrers of a deleted subject stay: only lifecycle expiry cascades ("Deleting
        # image artifacts" in the ECR user guide).
        del repo.images[image.digest]
        repo.order.remove(image.digest)
        for tag in image.tags:
            del repo.tags[tag]
        for child in image.info.children:
            parents = repo.parents.get(child)
            if parents is not None:
                parents.discard(image.digest)
                if not parents:
                    del repo.parents[child]
        if image.info.subject:
            repo.referrers.get(image.info.subject, {}).pop(image.digest, None)

    # -- lookups ------------------------------------------------------------------------

    def resolve(self, repo: RepositoryState, image_id: ImageId) -> StoredImage | None:
        """The image an imageId names: by digest, by tag, or both (which must agree)."""
        digest, tag = image_id.get("imageDigest"), image_id.get("imageTag")
        if tag is not None:
            held = repo.tags.get(tag)
            digest = held if digest in (None, held) else None
        return repo.images.get(digest) if digest else None

    def image_not_found(self, repo: RepositoryState, image_id: ImageId) -> EcrError:
        shown = (
            f"{{imageDigest:'{image_id.get('imageDigest', 'null')}', "
            f"imageTag:'{image_id.get('imageTag', 'null')}'}}"
        )
        return EcrError(
            "ImageNotFoundException",
            f"The image with imageId {shown} does not exist within the repository with name "
            f"'{repo.name}' in the registry with id '{self.account_id}'",
        )

    def referrers_of(self, repository: str, subject: str) -> list[StoredImage]:
        repo = self.repository(repository)
        return [repo.images[d] for d in repo.referrers.get(subject, {})]

    # -- read helpers for tests and benchmarks ------------------------------------------

    def images(self, repository: str) -> list[Image]:
        """Every image as the cleaner's model sees it, in push order."""
        repo = self.repository(repository)
        return [to_model(repo, repo.images[d]) for _, d in repo.order.iter_from()]

    def digests(self, repository: str) -> list[str]:
        return [d for _, d in self.repository(repository).order.iter_from()]

    def tags(self, repository: str) -> dict[str, str]:
        """Tag -> digest."""
        return dict(self.repository(repository).tags)


def to_model(repo: RepositoryState, image: StoredImage) -> Image:
    return Image(
        digest=image.digest,
        tags=tuple(image.tags),
        pushed_at=image.pushed_at,
        size=repo.size_of(image),
        media_type=image.info.media_type,
        artifact_media_type=image.info.artifact_media_type or "",
        last_pulled_at=image.last_pulled_at,
        subject=image.info.subject,
    )
