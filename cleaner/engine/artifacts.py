"""Load what the artifact graph needs from a registry: index entries and referrer subjects.

What is read, and why (each BatchGetImage call reads up to 100 manifests):

- Every index (OCI index, Docker manifest list): its entries are the only record of its
  children, and of which of them are buildx attestations.
- A single manifest only when it may be an OCI referrer the listing did not link: no
  `Image.subject` (subjectManifestDigest), an OCI image manifest (Docker v2 manifests have no
  `subject` field), and an `artifact_media_type` that is not an image config, or is empty
  because the endpoint does not report it (moto). Ordinary images, cosign signatures and
  buildx attestations carry an image config and are never read, so a sweep does not pay a
  second read per image; real ECR reports subjectManifestDigest, so there only OCI
  artifacts without a subject (Helm charts, ...) are read, once, and then cached.
- ListImageReferrers (one call per subject, so the costliest source) only as a last resort:
  when some candidate's manifest could not be read. It probes a bounded number of images and
  stops at the first answer saying the endpoint lacks the operation.

Manifests never change under a digest, so what was parsed from them is cached forever
(bounded, least recently used first out) and shared by all repositories.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Sequence
from operator import attrgetter
from typing import Protocol

from cleaner.planning.graph import ArtifactGraph, build_graph
from cleaner.planning.manifest_links import ManifestFacts, manifest_facts
from cleaner.planning.model import Image

log = logging.getLogger(__name__)

CHUNK = 100
"""BatchGetImage's maximum imageIds per call."""
DEFAULT_CACHE_ENTRIES = 100_000
DEFAULT_CONCURRENCY = 4
DEFAULT_REFERRER_PROBES = 50
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
IMAGE_CONFIG_TYPES = frozenset(
    {
        "application/vnd.oci.image.config.v1+json",
        "application/vnd.docker.container.image.v1+json",
    }
)


class ManifestSource(Protocol):
    """What the loader needs from a registry; `cleaner.registries.ecr.EcrRegistry` provides it."""

    async def get_manifests(self, repository: str, digests: Sequence[str]) -> dict[str, str]:
        """Manifest text by digest; digests it cannot return are absent."""
        ...

    async def list_referrers(self, repository: str, digest: str) -> list[str] | None:
        """Referrer digests of `digest`; None when the endpoint lacks ListImageReferrers."""
        ...


class ManifestCache:
    """Digest -> the facts parsed from its manifest, least recently used evicted first.

    Holds the parsed facts rather than the text: an index's text is kilobytes, its child
    digests a fraction of that, and each sweep is spared parsing it again.
    """

    def __init__(self, max_entries: int = DEFAULT_CACHE_ENTRIES) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._entries: OrderedDict[str, ManifestFacts] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, digest: object) -> bool:
        return digest in self._entries

    def get(self, digest: str) -> ManifestFacts | None:
        facts = self._entries.get(digest)
        if facts is not None:
            self._entries.move_to_end(digest)
        return facts

    def put(self, digest: str, facts: ManifestFacts) -> None:
        self._entries[digest] = facts
        self._entries.move_to_end(digest)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)


def needs_manifest(image: Image) -> bool:
    """Is this image's manifest worth a read? Indexes always; see the module docstring."""
    if image.is_index:
        return True
    return (
        image.subject is None
        and image.media_type == OCI_MANIFEST
        and image.artifact_media_type not in IMAGE_CONFIG_TYPES
    )


async def load_graph(
    source: ManifestSource,
    repository: str,
    images: Sequence[Image],
    cache: ManifestCache,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    referrer_probes: int = DEFAULT_REFERRER_PROBES,
) -> ArtifactGraph:
    """The repository's artifact graph, reading only uncached manifests (see module doc).

    `concurrency` bounds the BatchGetImage calls in flight; `referrer_probes` bounds the
    last-resort ListImageReferrers calls (0 turns them off).
    """
    wanted = list(dict.fromkeys(i.digest for i in images if needs_manifest(i)))
    # Collected locally: with more candidates than the cache holds, entries read early in
    # this very call could be evicted before they are used.
    known = {d: facts for d in wanted if (facts := cache.get(d)) is not None}
    texts = await _fetch(source, repository, [d for d in wanted if d not in known], concurrency)
    for digest, text in texts.items():
        known[digest] = facts = manifest_facts(text)
        cache.put(digest, facts)
    subjects = {d: f.subject for d, f in known.items() if f.subject}
    unread = [d for d in wanted if d not in known]
    if unread:
        log.warning("%s: %d manifests could not be read", repository, len(unread))
        found = await _probe_referrers(source, repository, images, unread, referrer_probes)
        subjects.update(found)
    children = {d: f.children for d, f in known.items() if f.children}
    return build_graph(images, children, subjects)


async def _fetch(
    source: ManifestSource, repository: str, digests: Sequence[str], concurrency: int
) -> dict[str, str]:
    """Read manifests in chunks of 100, at most `concurrency` chunks at once."""
    slots = asyncio.Semaphore(max(1, concurrency))
    wanted = set(digests)

    async def chunk(start: int) -> dict[str, str]:
        async with slots:
            got = await source.get_manifests(repository, digests[start : start + CHUNK])
        return {d: text for d, text in got.items() if d in wanted}

    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(chunk(s)) for s in range(0, len(digests), CHUNK)]
    return {d: text for task in tasks for d, text in task.result().items()}


async def _probe_referrers(
    source: ManifestSource,
    repository: str,
    images: Sequence[Image],
    unread: Sequence[str],
    limit: int,
) -> dict[str, str]:
    """Subjects of unread candidates, asking ListImageReferrers of the newest other images.

    One call per image probed, so bounded by `limit`; stops when every candidate is found,
    and quietly at the first sign the endpoint lacks the operation.
    """
    pending = set(unread)
    found: dict[str, str] = {}
    others = [i for i in images if i.digest not in pending]
    for image in sorted(others, key=attrgetter("pushed_at"), reverse=True)[:limit]:
        referrers = await source.list_referrers(repository, image.digest)
        if referrers is None:
            log.debug("%s: no ListImageReferrers on this endpoint", repository)
            break
        for digest in pending.intersection(referrers):
            found[digest] = image.digest
        pending.difference_update(referrers)
        if not pending:
            break
    return found
