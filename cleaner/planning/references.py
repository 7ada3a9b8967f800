"""Container image references, the set of images a cluster uses, and what that protects.

Pure, like the planner: the Kubernetes adapter (`cleaner.in_use.kubernetes`) turns pod specs and
statuses into an `InUse`; `in_use_protection` decides which images of one repository it keeps.
The parsing follows Docker's reference grammar (github.com/distribution/reference) and its
Docker Hub defaults, and is deliberately lenient where leniency only protects more.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

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
# Every endpoint of one ECR registry: standard, FIPS, dualstack (`dkr-ecr...on.aws`), China.
_ECR_HOST = re.compile(
    r"(?P<account>[0-9]{12})\.dkr[.-]ecr(?:-fips)?\.(?P<region>[a-z0-9-]+)"
    r"\.(?:amazonaws\.com(?:\.cn)?|on\.aws)(?::443)?"
)


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


def registry_key(host: str) -> str:
    """One key for every endpoint of one registry, so a pod pulling through the FIPS or
    dualstack endpoint still protects the image of the repository DescribeRepositories lists."""
    match = _ECR_HOST.fullmatch(host.lower())
    return f"ecr:{match['account']}:{match['region']}" if match else host.lower()


@dataclass(frozen=True, slots=True)
class Use:
    """One workload that uses one image reference; `who` reads `prod/Deployment/api`."""

    ref: ImageRef
    who: str


@dataclass(frozen=True)
class InUse:
    """Every image reference the clusters use, each with who uses it."""

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

    def for_repository(self, repository: Repository) -> tuple[Use, ...]:
        """The uses whose host and path name this repository."""
        own = parse_reference(repository.uri) if repository.uri else None
        if own is None:
            # No URI to compare: match the name on any ECR endpoint of the same account.
            # Over-matching only keeps more; under-matching would delete a running image.
            candidates = self._by_path.get(repository.name, ())
            return tuple(u for u in candidates if _same_account(u.ref.host, repository))
        key = registry_key(own.host)
        return tuple(u for u in self._by_path.get(own.path, ()) if registry_key(u.ref.host) == key)


def _same_account(host: str, repository: Repository) -> bool:
    key = registry_key(host).split(":")
    return key[0] == "ecr" and repository.registry_id in ("", key[1])


def in_use_protection(
    repository: Repository, images: Sequence[Image], in_use: InUse
) -> dict[str, str]:
    """Digest -> `in use: ...` for every image of the repository that a workload uses.

    A digest protects that manifest directly, even an index (its children follow it in the
    artifact graph). A tag protects the image that holds the tag NOW; the image a pod started
    from before the tag moved is covered by the pod's `imageID` digest instead.
    """
    by_tag = {tag: image.digest for image in images for tag in image.tags}
    present = {image.digest for image in images}
    users: dict[str, set[str]] = {}
    for use in in_use.for_repository(repository):
        digest = use.ref.digest or by_tag.get(use.ref.tag or "")
        if digest in present:
            users.setdefault(digest, set()).add(use.who)
    return {digest: in_use_reason(who) for digest, who in users.items()}


def in_use_reason(users: Iterable[str]) -> str:
    ordered = sorted(users)
    shown = ", ".join(ordered[:MAX_USERS_SHOWN])
    more = len(ordered) - MAX_USERS_SHOWN
    return f"in use: {shown}" + (f" +{more} more" if more > 0 else "")


# Kubernetes objects, as the API's JSON: a pod, or a workload with a pod template.
_CONTAINERS = ("containers", "initContainers", "ephemeralContainers")
_STATUSES = ("containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses")


def workload_uses(kind: str, obj: Mapping[str, Any]) -> frozenset[Use]:
    """The image uses of one object; odd or partial objects yield what they can, never raise."""
    meta = json_object(obj.get("metadata"))
    who = f"{meta.get('namespace', '')}/{kind}/{meta.get('name', '')}{_note(kind, obj)}"
    refs = (parse_reference(text) for text in _image_texts(kind, obj))
    return frozenset(Use(ref, who) for ref in refs if ref is not None)


def _image_texts(kind: str, obj: Mapping[str, Any]) -> Iterator[object]:
    spec = json_object(obj.get("spec"))
    if kind == "CronJob":
        spec = json_object(json_object(spec.get("jobTemplate")).get("spec"))
    if kind != "Pod":
        spec = json_object(json_object(spec.get("template")).get("spec"))
    for key in _CONTAINERS:
        yield from (c.get("image") for c in json_objects(spec.get(key)))
    # The digest a pod actually runs: the only trace of it once its tag has moved on.
    status = json_object(obj.get("status")) if kind == "Pod" else {}
    for key in _STATUSES:
        for state in json_objects(status.get(key)):
            yield state.get("imageID")
            yield state.get("image")


def _note(kind: str, obj: Mapping[str, Any]) -> str:
    if kind == "Pod":
        phase = json_object(obj.get("status")).get("phase")
        return f" ({phase.lower()})" if isinstance(phase, str) and phase else ""
    return " (scaled to 0)" if json_object(obj.get("spec")).get("replicas") == 0 else ""


def json_object(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def json_objects(value: object) -> list[Mapping[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []
