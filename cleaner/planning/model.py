"""Plain data shared by the planner, the engine and the adapters. No I/O here."""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import compress, count, islice
from operator import attrgetter, eq
from typing import NamedTuple

INDEX_MEDIA_TYPES = frozenset(
    {
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.index.v1+json",
    }
)


@dataclass(frozen=True, slots=True)
class Image:
    """One image (manifest) in a repository, as its registry adapter reports it."""

    digest: str
    tags: tuple[str, ...]
    pushed_at: datetime
    """Timezone-aware; lifecycle rules rank and age images by this. What it means is the
    registry adapter's to say (ECR: the push time it recorded)."""
    size: int = 0
    media_type: str = ""
    artifact_media_type: str = ""
    last_pulled_at: datetime | None = None
    subject: str | None = None
    """`subjectManifestDigest`: set when this image is an OCI referrer of another."""
    age_from: str = "pushed"
    """The word reasons use for `pushed_at` ("pushed 3d ago"), so an adapter whose time
    is not a push record can say where it came from instead."""

    @property
    def tagged(self) -> bool:
        return bool(self.tags)

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_MEDIA_TYPES


def newest_first(images: Iterable[Image]) -> list[Image]:
    """ECR's ranking order: youngest `pushed_at` first.

    ECR does not document how it orders images pushed at the same instant. We break ties by
    digest (ascending) so the same repository always yields the same plan: a dry run, a
    preview and the real sweep then agree, and tests are reproducible. Never by digest alone:
    "Expiration is always ordered by pushed_at_time".
    """
    # One sort by time (close to linear for listings in push order), then digest order
    # within each run of equal times. Sorting everything by digest first would be simpler
    # and cost five times as much at 100,000 images (bench/plan.py).
    ordered = sorted(images, key=_PUSHED_AT, reverse=True)
    times = list(map(_PUSHED_AT, ordered))
    start = end = -1
    for i in compress(count(), map(eq, times, islice(times, 1, None))):  # times[i] == times[i+1]
        if i > end:  # a new run of equal times begins; order the previous one
            _by_digest(ordered, start, end)
            start = i
        end = i + 1
    _by_digest(ordered, start, end)
    return ordered


_PUSHED_AT = attrgetter("pushed_at")
_DIGEST = attrgetter("digest")


def _by_digest(images: list[Image], start: int, end: int) -> None:
    """Sort `images[start..end]` (inclusive) by digest, in place; nothing when start < 0."""
    if start >= 0:
        images[start : end + 1] = sorted(images[start : end + 1], key=_DIGEST)


@dataclass(frozen=True, slots=True)
class Repository:
    name: str
    uri: str = ""
    registry_id: str = ""


class TagStatus(enum.StrEnum):
    TAGGED = "tagged"
    UNTAGGED = "untagged"
    ANY = "any"


class CountType(enum.StrEnum):
    IMAGE_COUNT_MORE_THAN = "imageCountMoreThan"
    SINCE_IMAGE_PUSHED = "sinceImagePushed"
    SINCE_IMAGE_PULLED = "sinceImagePulled"
    SINCE_IMAGE_TRANSITIONED = "sinceImageTransitioned"


class ActionType(enum.StrEnum):
    EXPIRE = "expire"
    TRANSITION = "transition"


@dataclass(frozen=True, slots=True)
class Rule:
    """One validated ECR lifecycle rule."""

    priority: int
    tag_status: TagStatus
    count_type: CountType
    count_number: int
    action: ActionType = ActionType.EXPIRE
    tag_patterns: tuple[str, ...] = ()
    tag_prefixes: tuple[str, ...] = ()
    storage_class: str = "standard"
    description: str = ""

    def label(self) -> str:
        """Short human name used in reasons: `rule 1 "keep 5 prod"`."""
        return (
            f'rule {self.priority} "{self.description}"'
            if self.description
            else (f"rule {self.priority}")
        )


@dataclass(frozen=True, slots=True)
class LifecyclePolicy:
    """A validated ECR lifecycle policy: rules sorted by priority, lowest first."""

    rules: tuple[Rule, ...]


class Verdict(enum.StrEnum):
    KEEP = "keep"
    EXPIRE = "expire"


class Decision(NamedTuple):
    """One image's verdict and the reason for it.

    A NamedTuple rather than a frozen dataclass like its neighbours: a plan makes one per
    image, and a frozen dataclass's `__init__` costs about three times as much (bench/plan.py
    measures planning).
    """

    image: Image
    verdict: Verdict
    reason: str
    rule: int | None = None
    """Priority of the rule that decided, if a rule did."""


@dataclass(frozen=True, slots=True)
class Plan:
    """Every image of one repository with its verdict and reason, newest first."""

    repository: str
    decisions: tuple[Decision, ...]

    @property
    def keep(self) -> tuple[Decision, ...]:
        return tuple(d for d in self.decisions if d.verdict is Verdict.KEEP)

    @property
    def expire(self) -> tuple[Decision, ...]:
        return tuple(d for d in self.decisions if d.verdict is Verdict.EXPIRE)


class FailureKind(enum.StrEnum):
    REFERENCED = "referenced"
    """The registry refused: an image index still references the image."""
    ERROR = "error"
    """Anything else."""


@dataclass(frozen=True, slots=True)
class DeleteFailure:
    digest: str
    code: str
    """The registry's own code for the failure (ECR: `ImageReferencedByManifestList`, ...)."""
    message: str
    kind: FailureKind = FailureKind.ERROR


@dataclass(frozen=True, slots=True)
class DeleteResult:
    """Outcome of deleting digests, decided per requested digest."""

    deleted: tuple[str, ...] = ()
    failed: tuple[DeleteFailure, ...] = ()


class ErrorKind(enum.StrEnum):
    """Why a repository failed as a whole, so that metrics and alerts can tell causes apart."""

    IN_USE = "in_use"
    """An in-use source could not say what runs: the repository failed closed."""
    REGISTRY = "registry"
    COORDINATION = "coordination"
    """Its Lease was busy, lost, or the Lease API could not be reached."""
    POLICY = "policy"
    """Its rules could not be used (`rules: ecr` with an invalid ECR lifecycle policy)."""
    SAFETY = "safety"
    """A brake held (`safety.max_deletions`): nothing was deleted."""
    INTERNAL = "internal"
    """A bug."""


@dataclass(frozen=True, slots=True)
class RepositoryReport:
    repository: str
    plan: Plan | None = None
    deleted: tuple[str, ...] = ()
    failed: tuple[DeleteFailure, ...] = ()
    error: str | None = None
    error_kind: ErrorKind | None = None
    """Set with `error`."""
    account: str = ""
    """The registry's account (ECR: its registry id); "" when the registry has none."""
    region: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None and not self.failed

    @property
    def reclaimed(self) -> int:
        """Bytes of the images this prune deleted (as the registry reported their sizes)."""
        if not self.deleted:  # a dry run: no pass over the plan
            return 0
        deleted = set(self.deleted)
        expired = self.plan.expire if self.plan else ()
        return sum(d.image.size for d in expired if d.image.digest in deleted)


@dataclass(frozen=True, slots=True)
class Target:
    """Where a registry is: an account and a region (ECR); "" where it has neither."""

    account: str = ""
    region: str = ""

    def __str__(self) -> str:
        return "/".join(part for part in (self.account, self.region) if part) or "registry"


@dataclass(frozen=True, slots=True)
class TargetFailure:
    """A target that could not be swept at all (a role not assumable, a region not
    enabled, listing refused): the run reports it and carries on with the others."""

    target: Target
    error: str


@dataclass(frozen=True, slots=True)
class RunReport:
    dry_run: bool
    repositories: tuple[RepositoryReport, ...] = field(default_factory=tuple)
    failed_targets: tuple[TargetFailure, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.failed_targets and all(r.ok for r in self.repositories)

    @classmethod
    def combine(cls, dry_run: bool, reports: Sequence[RunReport]) -> RunReport:
        """The report of a run over several targets: each one's repositories and failures."""
        return cls(
            dry_run=dry_run,
            repositories=tuple(r for report in reports for r in report.repositories),
            failed_targets=tuple(f for report in reports for f in report.failed_targets),
        )

    @property
    def reclaimed(self) -> int:
        return sum(r.reclaimed for r in self.repositories)


def iso_utc(moment: datetime) -> str:
    """`2026-11-25T10:00:00Z`: the one timestamp form of our JSON output and audit trail."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Shard:
    """Shard `index` of `count`: a stable hash of the repository name picks the shard, so an
    Indexed Job's pods split the registry without talking to each other."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index}/{self.count}: need 0 <= index < count")

    def owns(self, repository: str) -> bool:
        digest = hashlib.sha256(repository.encode()).digest()
        return int.from_bytes(digest[:8], "big") % self.count == self.index
