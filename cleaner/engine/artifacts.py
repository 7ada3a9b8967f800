"""Load what the artifact graph needs from a registry: index entries and referrer subjects.

What is read, and why:

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
from collections.abc import Sequence
from operator import attrgetter

from cleaner.lru import Lru
from cleaner.planning.graph import ArtifactGraph, build_graph
from cleaner.planning.manifest_links import ManifestFacts, manifest_facts
from cleaner.planning.model import Image, Repository
from cleaner.ports import Registry

log = logging.getLogger(__name__)

DEFAULT_CACHE_ENTRIES = 100_000
DEFAULT_REFERRER_PROBES = 50
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
IMAGE_CONFIG_TYPES = frozenset(
    {
        "application/vnd.oci.image.config.v1+json",
        "application/vnd.docker.container.image.v1+json",
    }
)


class ManifestCache(Lru[ManifestFacts]):
    """Digest -> the facts parsed from its manifest, least recently used evicted first.

    Holds the parsed facts rather than the text: an index's text is kilobytes, its child
    digests a fraction of that, and each sweep is spared parsing it again.
    """

    def __init__(self, max_entries: int = DEFAULT_CACHE_ENTRIES) -> None:
        super().__init__(max_entries)


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
    source: Registry,
    repository: Repository,
    images: Sequence[Image],
    cache: ManifestCache,
    *,
    referrer_probes: int = DEFAULT_REFERRER_PROBES,
) -> ArtifactGraph:
    """The repository's artifact graph, reading only uncached manifests (see module doc).

    `referrer_probes` bounds the last-resort referrer calls (0 turns them off).
    """
    wanted = list(dict.fromkeys(i.digest for i in images if needs_manifest(i)))
    # Collected locally: with more candidates than the cache holds, entries read early in
    # this very call could be evicted before they are used.
    known = {d: facts for d in wanted if (facts := cache.get(d)) is not None}
    unknown = [d for d in wanted if d not in known]
    texts = await source.manifests(repository, unknown) if unknown else {}
    for digest, text in texts.items():
        known[digest] = facts = manifest_facts(text)
        cache.put(digest, facts)
    subjects = {d: f.subject for d, f in known.items() if f.subject}
    unread = [d for d in wanted if d not in known]
    if unread:
        log.warning("%s: %d manifests could not be read", repository.name, len(unread))
        found = await _probe_referrers(source, repository, images, unread, referrer_probes)
        subjects.update(found)
    children = {d: f.children for d, f in known.items() if f.children}
    # In a worker thread, like planning: pure CPU that grows with the repository.
    return await asyncio.to_thread(build_graph, images, children, subjects)


async def _probe_referrers(
    source: Registry,
    repository: Repository,
    images: Sequence[Image],
    unread: Sequence[str],
    limit: int,
) -> dict[str, str]:
    """Subjects of unread candidates, asking for the referrers of the newest other images.

    One call per image probed, so bounded by `limit`; stops when every candidate is found,
    and quietly at the first sign the endpoint lacks the operation.
    """
    pending = set(unread)
    found: dict[str, str] = {}
    others = [i for i in images if i.digest not in pending]
    for image in sorted(others, key=attrgetter("pushed_at"), reverse=True)[:limit]:
        referrers = await source.referrers(repository, image.digest)
        if referrers is None:
            log.debug("%s: the registry cannot list referrers", repository.name)
            break
        for digest in pending.intersection(referrers):
            found[digest] = image.digest
        pending.difference_update(referrers)
        if not pending:
            break
    return found
