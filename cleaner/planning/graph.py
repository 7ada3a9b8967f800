"""The artifact graph of one repository: which images exist only for the sake of another.

Pure: no I/O, no clock. `cleaner.engine.artifacts` loads the inputs (the links that manifests
and tags declare, read by `manifest_links`); the planner ranks only the top-level images and
`resolve_dependents` lets every other image follow its parents, the way the OCI image spec
(image-index.md, and the `subject` field of manifest.md) and ECR's "Deleting an image" guide
describe the links:

- an index (OCI index or Docker manifest list) is the parent of every manifest it lists,
  buildx attestation manifests included;
- an OCI 1.1 referrer is a dependent of its `subject`;
- a cosign tag-scheme artifact (`sha256-<hex>.sig|.att|.sbom`) is a dependent of
  `sha256:<hex>`, but only when ALL its tags follow that scheme: cosign never gives its
  artifacts other tags, so an image that also carries an ordinary tag is one somebody
  uses as an image, and it is ranked like any other.

A dependent is kept if any parent is kept, expired when every parent is expired. Parents
count only while present in the repository: an index child whose indexes are all gone is an
ordinary (top-level) image, while a referrer or cosign artifact whose subject is gone is an
"orphan artifact" that is expired without being ranked, so it never takes a "keep N" slot.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from operator import attrgetter
from typing import NamedTuple, cast

from cleaner.planning.manifest_links import ChildRef, Relation, cosign_parts
from cleaner.planning.model import Decision, Image, Verdict, newest_first


class Edge(NamedTuple):
    """A link from a dependent to one parent. A NamedTuple, like `Decision`: a graph makes
    one per dependent, and a frozen dataclass's `__init__` costs three times as much."""

    parent: str
    relation: Relation
    in_index: bool
    """True when the registry itself holds the link (an index lists the dependent)."""


@dataclass(frozen=True, slots=True)
class ArtifactGraph:
    """Parent links between the images of one repository; build it with `build_graph`."""

    _up: Mapping[str, tuple[Edge, ...]]
    """Dependent -> edges to its present parents, index edges first."""
    _down: Mapping[str, Sequence[str]]
    """Parent -> its present dependents."""
    _orphans: Mapping[str, Edge]
    """Orphan artifact -> the edge to its (gone) subject."""
    _images: Mapping[str, Image]
    """Digest -> image, for every image the graph was built from."""

    def parents(self, digest: str) -> frozenset[str]:
        """Parents present in the repository; empty for top-level images and orphans."""
        return frozenset(e.parent for e in self._up.get(digest, ()))

    def edges(self, digest: str) -> tuple[Edge, ...]:
        return self._up.get(digest, ())

    def relation(self, digest: str) -> Relation | None:
        """The main relation (an index link first); None for ordinary images."""
        edges = self._up.get(digest)
        if edges:
            return edges[0].relation
        orphan = self._orphans.get(digest)
        return orphan.relation if orphan else None

    def is_dependent(self, digest: str) -> bool:
        return digest in self._up

    def is_orphan_artifact(self, digest: str) -> bool:
        """A signature/attestation/SBOM/referrer whose subject is gone: expire it unranked."""
        return digest in self._orphans

    def orphan_subject(self, digest: str) -> str | None:
        orphan = self._orphans.get(digest)
        return orphan.parent if orphan else None

    def top_level(self, images: Iterable[Image]) -> list[Image]:
        """The images the planner ranks: no present parent and not an orphan artifact."""
        return self.split(images)[0]

    def split(self, images: Iterable[Image]) -> tuple[list[Image], list[Image]]:
        """`images` parted, order kept, into the top-level ones and the rest."""
        top: list[Image] = []
        rest: list[Image] = []
        up, orphans = self._up, self._orphans
        for image in images:
            digest = image.digest
            (rest if digest in up or digest in orphans else top).append(image)
        return top, rest


@contextmanager
def gc_paused() -> Iterator[None]:
    """Building a graph or a plan allocates hundreds of thousands of small objects and frees
    none until it returns; the cyclic collector would rescan them again and again for
    nothing (a tenth of the time at 100k images). Plans run in worker threads, so the pause
    is counted: the collector is back on once the last planner is done."""
    global _PAUSED
    with _PAUSE_LOCK:
        counted = _PAUSED > 0 or gc.isenabled()  # else someone else turned it off: leave it
        if counted:
            _PAUSED += 1
            gc.disable()
    try:
        yield
    finally:
        if counted:
            with _PAUSE_LOCK:
                _PAUSED -= 1
                if _PAUSED == 0:
                    gc.enable()


_PAUSED = 0
_PAUSE_LOCK = threading.Lock()


def build_graph(
    images: Sequence[Image],
    index_children: Mapping[str, Sequence[ChildRef | str]],
    referrer_subjects: Mapping[str, str],
) -> ArtifactGraph:
    """Link the repository's images.

    `index_children`: index digest -> its entries (a bare digest counts as a CHILD);
    `referrer_subjects`: referrer digest -> subject digest, used where `Image.subject`
    (subjectManifestDigest, authoritative when present) is missing.
    """
    with gc_paused():
        return _link(images, index_children, referrer_subjects)


def _link(
    images: Sequence[Image],
    index_children: Mapping[str, Sequence[ChildRef | str]],
    referrer_subjects: Mapping[str, str],
) -> ArtifactGraph:
    links = _Links({image.digest: image for image in images})
    for parent, refs in index_children.items():
        if parent in links.present:
            shared = Edge(parent, Relation.CHILD, True)  # one object for most entries
            for ref in refs:
                if isinstance(ref, str) or ref.relation is Relation.CHILD:
                    links.add(ref if isinstance(ref, str) else ref.digest, shared)
                else:
                    links.add(ref.digest, Edge(parent, ref.relation, True))
    listed_referrers = bool(referrer_subjects)
    for image in images:
        # Hot loop: most images are neither referrers nor cosign artifacts (whose tags all
        # start with the digest algorithm), so skip them before building anything.
        tags = image.tags
        if (
            image.subject
            or (tags and tags[0].startswith("sha"))
            or (listed_referrers and image.digest in referrer_subjects)
        ):
            for edge in _artifact_edges(image, referrer_subjects):
                links.add(image.digest, edge)
    orphans = {c: e for c, e in links.gone.items() if c not in links.up}
    return ArtifactGraph(links.up, links.down, orphans, links.present)


def _artifact_edges(image: Image, referrer_subjects: Mapping[str, str]) -> list[Edge]:
    subject = image.subject or referrer_subjects.get(image.digest)
    edges = [Edge(subject, Relation.REFERRER, False)] if subject else []
    if image.tags:
        cosign = [cosign_parts(tag) for tag in image.tags]
        edges += [Edge(p[0], p[1], False) for p in cosign if p] if all(cosign) else []
    return edges


class _Links:
    """Collects edges; few container objects per edge, as 100k images make the GC work hard."""

    def __init__(self, present: dict[str, Image]) -> None:
        self.present = present
        self.up: dict[str, tuple[Edge, ...]] = {}
        self.down: dict[str, list[str]] = {}
        self.gone: dict[str, Edge] = {}

    def add(self, child: str, edge: Edge) -> None:
        """The first edge per (child, parent) wins: index links come first."""
        parent = edge.parent
        image = self.present.get(child)
        if child == parent or image is None:
            return  # a self-reference is meaningless; an absent child is nothing to decide
        # Keep the image's own digest string: a later lookup by the very key object skips
        # comparing its 71 characters.
        child = image.digest
        if parent not in self.present:
            self.gone.setdefault(child, edge)  # never an index link: their parent is present
            return
        edges = self.up.get(child)
        if edges is None:  # the usual case: a first parent
            self.up[child] = (edge,)
        elif parent in [known.parent for known in edges]:
            return
        else:
            self.up[child] = (*edges, edge)
        siblings = self.down.get(parent)
        if siblings is None:
            self.down[parent] = [child]
        else:
            siblings.append(child)


_CYCLE_REASON = "kept: in a cycle of links with no top-level parent"


def resolve_dependents(
    top_decisions: Sequence[Decision], graph: ArtifactGraph, images: Sequence[Image]
) -> list[Decision]:
    """Decisions for ALL images, newest first: top-level ones as given, the rest follow.

    Raises ValueError when a top-level image has no decision. For any other image a KEEP
    given pins it (protections may keep a tagged child; its own dependents follow it), an
    EXPIRE given is ignored: dependents follow their parents, orphan artifacts expire.
    """
    return resolve_ordered(top_decisions, graph, newest_first(images))


def resolve_ordered(
    top_decisions: Sequence[Decision], graph: ArtifactGraph, ordered: Sequence[Image]
) -> list[Decision]:
    """`resolve_dependents` for images already newest first (the planner sorts once)."""
    decided = _settle(graph, top_decisions, loose=[])
    digests = list(map(_DIGEST, ordered))
    found = list(map(decided.get, digests))
    if None not in found:
        return cast(list[Decision], found)
    # Only a cycle of links leaves images that no root reaches. Content addressing makes one
    # rare but possible (an index whose `subject` is a descendant of one of its children;
    # cosign tags are free text): keep them, the safe side, and settle again.
    loose = [i for i, decision in zip(ordered, found, strict=True) if decision is None]
    _require_top_level_decided(loose, graph)
    decided = _settle(graph, top_decisions, loose)
    return list(map(decided.__getitem__, digests))


_DIGEST = attrgetter("digest")


def _require_top_level_decided(undecided: Iterable[Image], graph: ArtifactGraph) -> None:
    """Spreading leaves only dependents undecided; a top-level image was given no decision."""
    for image in undecided:
        if not graph.is_dependent(image.digest) and not graph.is_orphan_artifact(image.digest):
            raise ValueError(f"no decision for top-level image {image.digest}")


def _settle(
    graph: ArtifactGraph, top_decisions: Sequence[Decision], loose: Sequence[Image]
) -> dict[str, Decision]:
    """Roots decided as given (loose images kept), then their verdicts spread."""
    decided, kept, expired = _roots(top_decisions, graph)
    for image in loose:
        decided[image.digest] = Decision(image, Verdict.KEEP, _CYCLE_REASON)
    kept += [i.digest for i in loose if i.digest in graph._down]
    # Keep spreads first: whatever it cannot reach has no kept parent, so it expires.
    _spread(graph, kept, decided)
    _spread(graph, expired, decided)
    return decided


def _roots(
    top_decisions: Sequence[Decision], graph: ArtifactGraph
) -> tuple[dict[str, Decision], list[str], list[str]]:
    """Top-level decisions as given, orphan artifacts expired, pinned dependents kept; and
    which of them have dependents to spread to, kept ones and expired ones.

    A decision for an image the graph does not hold is harmless: nothing follows it and
    `resolve_ordered` answers for its own images only.
    """
    decided: dict[str, Decision] = {}
    kept: list[str] = []
    expired: list[str] = []
    up, down, orphans = graph._up, graph._down, graph._orphans
    for decision in top_decisions:  # hot loop: one pass, few lookups per decision
        digest = decision.image.digest
        keep = decision.verdict is Verdict.KEEP
        if keep or not (digest in up or digest in orphans):
            decided[digest] = decision
            if digest in down:
                (kept if keep else expired).append(digest)
    for digest in orphans:
        if digest not in decided:  # a pinned orphan stays kept
            decided[digest] = _orphan_decision(graph._images[digest], graph)
            if digest in down:
                expired.append(digest)
    return decided, kept, expired


def _spread(graph: ArtifactGraph, seeds: Sequence[str], decided: dict[str, Decision]) -> None:
    """Breadth-first from decided parents: each undecided dependent takes its parent's verdict.

    Level by level, and only parents enter a level: most images have no dependents.
    """
    down, up, images = graph._down, graph._up, graph._images
    level = seeds
    while level:
        following = []
        for digest in level:
            parent = decided[digest]
            said: dict[tuple[Relation, int], str] = {}  # siblings share one reason string
            for child in down[digest]:
                if child not in decided:
                    edges = up[child]
                    relation = edges[0].relation if len(edges) == 1 else _relation(edges, digest)
                    key = (relation, len(edges))
                    reason = said.get(key) or said.setdefault(key, _reason(parent, *key))
                    decided[child] = Decision(images[child], parent.verdict, reason)
                    if child in down:
                        following.append(child)
        level = following


def _relation(edges: Iterable[Edge], parent: str) -> Relation:
    return next(edge.relation for edge in edges if edge.parent == parent)


def _reason(parent: Decision, relation: Relation, parents: int) -> str:
    """`kept: child of sha256:abcd1234ef12 (v1.2, kept)`; expired ones say if there are more."""
    word = "kept" if parent.verdict is Verdict.KEEP else "expired"
    digest = _short(parent.image.digest)
    # `.value`: formatting a StrEnum member itself costs five times as much, per dependent
    reason = f"{word}: {relation.value} of {digest} ({_label(parent.image)}, {word})"
    if parent.verdict is Verdict.EXPIRE and parents > 1:
        reason += f" and {parents - 1} more parents, all expired"
    return reason


def _orphan_decision(image: Image, graph: ArtifactGraph) -> Decision:
    relation, subject = graph.relation(image.digest), graph.orphan_subject(image.digest)
    reason = f"expired: orphan {relation} of {_short(subject or '')} (subject is gone)"
    return Decision(image, Verdict.EXPIRE, reason)


def _short(digest: str) -> str:
    """`sha256:` and the first 12 hex digits, like docker's short ids."""
    return digest[: digest.find(":") + 13]


def _label(image: Image) -> str:
    if not image.tags:
        return "untagged"
    shown = ",".join(image.tags[:3])
    return shown + ",..." if len(image.tags) > 3 else shown


def deletion_waves(digests: Iterable[str], graph: ArtifactGraph) -> list[list[str]]:
    """Order deletions so every parent goes in an earlier wave than its dependents.

    ECR refuses to delete an index child before its index (ImageReferencedByManifestList).
    Referrers and signatures have no such guard, but parents-first for them too means a
    parent the registry refuses (a concurrent push) can still spare its dependents. Waves are
    as many as the longest chain (usually 1 to 3); within a wave, any order.
    """
    wanted = list(dict.fromkeys(digests))
    pending = set(wanted)
    waiting = dict.fromkeys(wanted, 0)
    for digest in wanted:
        for edge in graph.edges(digest):
            waiting[digest] += edge.parent in pending
    waves: list[list[str]] = []
    wave = [d for d in wanted if waiting[d] == 0]
    while wave:
        waves.append(wave)
        wave = []
        for parent in waves[-1]:
            for child in graph._down.get(parent, ()):
                if child in waiting:
                    waiting[child] -= 1
                    if waiting[child] == 0:
                        wave.append(child)
    stuck = [d for d in wanted if waiting[d] > 0]  # only a cycle of links gets stuck
    return [*waves, stuck] if stuck else waves
