"""Container image references, the set of images workloads use, and what that protects.

Pure, like the planner: in-use sources (`cleaner.in_use`) turn what their platforms report
into an `InUse`; `in_use_protection` decides which images of one repository it keeps, asking
the registry adapter whether a reference points into the repository. The parsing follows
Docker's reference grammar (github.com/distribution/reference) and its Docker Hub defaults,
and is deliberately lenient where leniency only protects more.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

from cleaner.planning.model import Image, Repository

DOCKER_HUB = "docker.io"
MAX_USERS_SHOWN = 3

# Runtime prefixes on `status.containerStatuses[].imageID` (dockershim, cri-dockerd, CRI-O).
_SCHEMES = ("docker-pullable://", "docker://", "containerd://", "cri-o://")
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_HOST = re.compile(r"(?:[a-z0-9-]+(?:\.[a-z0-9-]+)*|\[[0-9a-f:]+\])(?::[0-9]+)?")
_PATH = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-f]{32,}")


@dataclass(frozen=True, slots=True)
class ImageRef:
    """A normalised reference: `host/path[:tag][@digest]`, Docker Hub defaults applied."""

    host: str
    path: str
    tag: str | None = None
    digest: str | None = None

    def __str__(self) -> str:
        tag = f":{self.tag}" if self.tag else ""
        digest = f"@{self.digest}" if self.digest else ""
        return f"{self.host}/{self.path}{tag}{digest}"


def parse_reference(text: object) -> ImageRef | None:
    """Normalise an image reference or imageID; None for anything that names no repository.

    A reference without tag or digest means `:latest`, as the kubelet pulls it. A bare
    `sha256:...` (an image config ID, `docker://sha256:...`) names no repository: None.
    """
    if not isinstance(text, str):
        return None
    name = text.strip()
    for scheme in _SCHEMES:
        name = name.removeprefix(scheme)
    name, _, digest = name.partition("@")
    if digest and not _DIGEST.fullmatch(digest := digest.lower()):
        return None
    if _DIGEST.fullmatch(name.lower()):
        return None  # `sha256:<id>`: a local image ID, no repository
    colon = name.rfind(":")
    tag = None
    if colon > name.rfind("/"):
        name, tag = name[:colon], name[colon + 1 :]
        if not _TAG.fullmatch(tag):
            return None
    host, path = split_host(name)
    if not _HOST.fullmatch(host) or not _PATH.fullmatch(path):
        return None
    return ImageRef(host, path, tag or (None if digest else "latest"), digest or None)


def split_host(name: str) -> tuple[str, str]:
    """Docker's rule: the first component is a host only if it has `.` or `:`, is
    `localhost`, or has an uppercase letter; otherwise the name is on Docker Hub."""
    first, slash, rest = name.partition("/")
    is_host = "." in first or ":" in first or first == "localhost" or first != first.lower()
    if not (slash and is_host):
        return DOCKER_HUB, name if "/" in name else f"library/{name}"
    host = first.lower()
    return (DOCKER_HUB if host == "index.docker.io" else host), rest


Matcher = Callable[[ImageRef, Repository], bool]
"""`Registry.matches`: does a reference point into this repository?"""


@dataclass(frozen=True, slots=True)
class Use:
    """One workload that uses one image reference; `who` reads `prod/Deployment/api`."""

    ref: ImageRef
    who: str


@dataclass(frozen=True)
class InUse:
    """Every image reference the workloads use, each with who uses it."""

    uses: frozenset[Use] = frozenset()

    @classmethod
    def of(cls, uses: Iterable[Use]) -> InUse:
        return cls(frozenset(uses))

    @classmethod
    def merge(cls, parts: Iterable[InUse]) -> InUse:
        return cls(frozenset().union(*(p.uses for p in parts)))

    def __len__(self) -> int:
        return len(self.uses)

    @cached_property
    def _by_path(self) -> Mapping[str, tuple[Use, ...]]:
        # Indexed once: the engine asks once per repository, and a registry has hundreds.
        index: dict[str, list[Use]] = {}
        for use in self.uses:
            index.setdefault(use.ref.path, []).append(use)
        return {path: tuple(uses) for path, uses in index.items()}

    def for_repository(self, repository: Repository, matches: Matcher) -> tuple[Use, ...]:
        """The uses that `matches` says point into this repository (same path, and a host
        the registry answers to)."""
        return tuple(
            u for u in self._by_path.get(repository.name, ()) if matches(u.ref, repository)
        )


def in_use_protection(
    repository: Repository, images: Sequence[Image], in_use: InUse, matches: Matcher
) -> dict[str, str]:
    """Digest -> `in use: ...` for every image of the repository that a workload uses.

    A digest protects that manifest directly, even an index (its children follow it in the
    artifact graph). A tag protects the image that holds the tag NOW; the image a pod started
    from before the tag moved is covered by the pod's `imageID` digest instead.
    """
    by_tag = {tag: image.digest for image in images for tag in image.tags}
    present = {image.digest for image in images}
    users: dict[str, set[str]] = {}
    for use in in_use.for_repository(repository, matches):
        digest = use.ref.digest or by_tag.get(use.ref.tag or "")
        if digest in present:
            users.setdefault(digest, set()).add(use.who)
    return {digest: in_use_reason(who) for digest, who in users.items()}


def in_use_reason(users: Iterable[str]) -> str:
    ordered = sorted(users)
    shown = ", ".join(ordered[:MAX_USERS_SHOWN])
    more = len(ordered) - MAX_USERS_SHOWN
    return f"in use: {shown}" + (f" +{more} more" if more > 0 else "")
