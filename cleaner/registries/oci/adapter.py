"""The OCI Distribution adapter of the `Registry` port: any registry speaking `/v2/`.

Spec: https://github.com/opencontainers/distribution-spec/blob/main/spec.md. What it gives
and what it lacks decide the shape:

- There is no list of manifests. The images are the tagged manifests (tags grouped by
  digest), everything an index lists (platform manifests, attestations), and the referrers
  found through the referrers API or the fallback tag `sha256-<hex>`, and the subjects
  those and cosign's tags name. Any other manifest reachable only by its digest is
  invisible, so never deleted here; the registry's GC removes it.
- There is no push time in the spec: `Image.pushed_at` is Harbor's or GitHub's own record
  where there is one, else it comes from `cleaner.registries.oci.age` (or the first-seen
  record), and `Image.age_from` says from where.
- Deleting is by digest (`DELETE /v2/<name>/manifests/<digest>`), and the registry does not
  refuse to delete a manifest an index still lists. So `delete` refuses it here, as ECR
  would (`FailureKind.REFERENCED`), after re-reading which indexes are present; a tagged one
  loses its tags instead (`untag`), since its tags were to go and its bytes must stay.
- Untagging pushes a throwaway manifest to the tag and deletes that, as regclient's
  `regctl tag delete` does, rather than `DELETE .../manifests/<tag>`, which a registry may
  resolve to the digest and so delete every tag of the image.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol, TypeVar
from urllib.parse import quote

import aiohttp

from cleaner.lru import Lru
from cleaner.planning.manifest_links import cosign_subject
from cleaner.planning.model import (
    DeleteFailure,
    DeleteResult,
    FailureKind,
    Image,
    LifecyclePolicy,
    Repository,
)
from cleaner.planning.references import DOCKER_HUB, ImageRef
from cleaner.registries.oci import age
from cleaner.registries.oci.auth import Login, host_of
from cleaner.registries.oci.documents import (
    ACCEPT,
    OCI_MANIFEST,
    Manifest,
    digest_of,
    fallback_subject,
)
from cleaner.registries.oci.first_seen import SOURCE as FIRST_SEEN
from cleaner.registries.oci.first_seen import FirstSeen
from cleaner.registries.oci.github import GithubPackages
from cleaner.registries.oci.harbor import HarborTimes, Times
from cleaner.registries.oci.paging import paged
from cleaner.registries.oci.transport import Transport, failed

log = logging.getLogger(__name__)
_T = TypeVar("_T")

BATCH_LIMIT = 100
"""Digests per `recheck`/`delete`: each batch re-reads the repository once, so larger
batches re-read less; the registry itself takes one digest per DELETE."""
PARALLEL = 8
"""Requests in flight per repository listing."""
RECHECK_REUSE_S = 5.0
"""`delete` reuses the listing `recheck` read this recently: the engine re-checks each
batch just before deleting it, and reading the repository twice per batch buys nothing."""
MAX_SUBJECT_ROUNDS = 3
"""Subjects of subjects (a signature of an attestation of an image) are looked up this
many levels deep."""
REFERENCED = "REFERENCED_BY_INDEX"
UNTAGGED = "UNTAGGED_ONLY"
UNTAG_REFUSED = "UNTAG_REFUSED"
# The empty descriptor of image-spec manifest.md ("Guidance for an Empty Descriptor").
EMPTY_JSON = b"{}"
EMPTY_TYPE = "application/vnd.oci.empty.v1+json"
_HUB_HOSTS = ("registry-1.docker.io", "index.docker.io", "docker.io")
GHCR = "ghcr.io"
GITHUB_API = "https://api.github.com"


CACHED = 100_000
"""Manifests (and config ages) kept per process, least recently used out first: what a
digest names never changes, so a long-running receiver need not read it twice, but its
memory stays bounded, as the engine's own manifest cache is."""


class RecordedTimes(Protocol):
    """A registry's own push (and pull) record, where it keeps one (Harbor, GitHub)."""

    async def times(self, name: str) -> dict[str, Times] | None: ...


@dataclass(slots=True)
class Listing:
    """One repository as read now: its tags and every manifest found from them."""

    tags: dict[str, str] = field(default_factory=dict)
    """Tag -> digest."""
    manifests: dict[str, Manifest] = field(default_factory=dict)
    subjects: dict[str, str] = field(default_factory=dict)
    """A referrer's digest -> its subject, where the manifest does not say (fallback index)."""

    def tags_of(self, digest: str) -> tuple[str, ...]:
        return self.tags_by_digest().get(digest, ())

    def tags_by_digest(self) -> dict[str, tuple[str, ...]]:
        """Digest -> its tags, sorted; one pass over the tags, not one per image."""
        grouped: dict[str, list[str]] = {}
        for tag, digest in sorted(self.tags.items()):
            grouped.setdefault(digest, []).append(tag)
        return {digest: tuple(tags) for digest, tags in grouped.items()}

    def holders(self) -> dict[str, set[str]]:
        """Digest -> the present indexes that list it."""
        held: dict[str, set[str]] = {}
        for manifest in self.manifests.values():
            for child in manifest.children:
                held.setdefault(child, set()).add(manifest.digest)
        return held


class OciRegistry:
    """One registry at `base_url` (`http(s)://host[:port]`), through `Transport`."""

    batch_limit = BATCH_LIMIT

    def __init__(
        self,
        transport: Transport,
        *,
        first_seen: FirstSeen | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        github_api: str | None = None,
    ) -> None:
        """`github_api`: read push times from GitHub's Packages API there (for ghcr.io,
        https://api.github.com unless given); elsewhere, from Harbor's API if it is one."""
        self._http = transport
        self.host = host_of(transport.base_url)
        if github_api is None and self.host == GHCR:
            github_api = GITHUB_API
        self._recorded: RecordedTimes = (
            GithubPackages(transport, github_api) if github_api else HarborTimes(transport)
        )
        self._first_seen = first_seen
        self._clock = clock
        self._manifests: Lru[Manifest] = Lru(CACHED)
        self._ages: Lru[age.Age | None] = Lru(CACHED)
        """Config digest -> the age its `created` gives (None: none usable)."""
        self._referrers_api: bool | None = None
        """Does the registry offer GET /v2/<name>/referrers? None until asked once."""
        self._rechecked: dict[str, tuple[float, Listing]] = {}
        """Repository -> (monotonic time, listing) of its last recheck."""

    @classmethod
    @asynccontextmanager
    async def connect(
        cls,
        base_url: str,
        *,
        login: Login | None = None,
        first_seen: FirstSeen | None = None,
        max_connections: int = 10,
        github_api: str | None = None,
    ) -> AsyncIterator[OciRegistry]:
        connector = aiohttp.TCPConnector(limit=max(max_connections, PARALLEL))
        async with aiohttp.ClientSession(connector=connector) as session:
            transport = Transport(session, base_url.rstrip("/"), login)
            yield cls(transport, first_seen=first_seen, github_api=github_api)

    # --- the port: reading -------------------------------------------------------------------

    def matches(self, ref: ImageRef, repository: Repository) -> bool:
        """The same host (and port) and the same path; Docker Hub's hosts are one."""
        own = DOCKER_HUB if self.host in _HUB_HOSTS else self.host
        return ref.host.lower() == own and ref.path == repository.name

    async def ping(self) -> None:
        """`GET /v2/`, the spec's version check (end-1): 200 once authenticated."""
        answer = await self._http.request("GET", "/v2/", scope="")
        if answer.status != 200:
            raise failed(answer, "GET /v2/")

    async def repositories(self) -> list[Repository]:
        """The `/v2/_catalog` listing (not every registry offers it: GHCR and Docker Hub
        do not; name the repositories there)."""
        names = await paged(self._fetcher("registry:catalog:*"), "/v2/_catalog", "repositories")
        return [self._repository(n) for n in names]

    async def repository(self, name: str) -> Repository:
        """No call: a name that does not exist fails at its listing (NAME_UNKNOWN)."""
        return self._repository(name)

    def _repository(self, name: str) -> Repository:
        return Repository(name, f"{self.host}/{name}")

    async def images(self, repository: Repository) -> list[Image]:
        listing = await self._listing(repository.name)
        return await self._images(repository.name, listing)

    async def recheck(self, repository: Repository, digests: Sequence[str]) -> dict[str, Image]:
        """The listing again; a wanted digest it no longer reaches (its fallback index was
        deleted a wave ago) is asked for by digest, so nothing still present reads as gone."""
        wanted = list(dict.fromkeys(digests))
        if len(wanted) > BATCH_LIMIT:
            raise ValueError(f"at most {BATCH_LIMIT} digests per call, got {len(wanted)}")
        listing = await self._listing(repository.name)
        self._rechecked[repository.name] = (time.monotonic(), listing)
        for digest in [d for d in wanted if d not in listing.manifests]:
            manifest = await self._manifest(repository.name, digest)
            if manifest is not None:
                listing.manifests[digest] = manifest
        images = await self._images(repository.name, listing, record=False)
        return {i.digest: i for i in images if i.digest in wanted}

    async def manifests(self, repository: Repository, digests: Sequence[str]) -> dict[str, str]:
        found = await self._gather(
            self._manifest(repository.name, d) for d in dict.fromkeys(digests)
        )
        return {m.digest: m.text for m in found if m is not None}

    async def referrers(self, repository: Repository, digest: str) -> list[str] | None:
        """The referrers API (end-12a); None when the registry has none (a 404, as the
        spec says only a registry without it may answer)."""
        answer = await self._http.request(
            "GET",
            f"/v2/{repository.name}/referrers/{digest}",
            scope=self._scope(repository.name, "pull"),
        )
        if answer.status == 404:
            self._referrers_api = False
            return None
        if answer.status != 200:
            raise failed(answer, f"GET referrers of {digest}", repository.name)
        self._referrers_api = True
        return list(Manifest.parse("", answer.body).children)

    async def own_rules(self, repository: Repository) -> LifecyclePolicy | None:
        return None  # the distribution spec has no lifecycle rules of its own

    # --- the port: deleting ------------------------------------------------------------------

    async def delete(self, repository: Repository, digests: Sequence[str]) -> DeleteResult:
        """Each digest by its own DELETE, indexes first, after reading which present
        indexes list it (see the module docstring)."""
        wanted = list(dict.fromkeys(digests))
        if len(wanted) > BATCH_LIMIT:
            raise ValueError(f"at most {BATCH_LIMIT} digests per call, got {len(wanted)}")
        taken, listing = self._rechecked.pop(repository.name, (0.0, None))
        if listing is None or time.monotonic() - taken > RECHECK_REUSE_S:
            listing = await self._listing(repository.name)
        holders = listing.holders()
        deleted: list[str] = []
        failures: list[DeleteFailure] = []
        indexes_first = sorted(wanted, key=lambda d: not _is_index(listing, d))
        for digest in indexes_first:
            kept_by = holders.get(digest, set()) - set(deleted)
            if kept_by:
                failures.append(await self._hold(repository.name, digest, kept_by, listing))
                continue
            failure = await self._delete_one(repository.name, digest)
            if failure is None:
                deleted.append(digest)
            else:
                failures.append(failure)
        return DeleteResult(
            deleted=tuple(d for d in wanted if d in deleted),
            failed=tuple(sorted(failures, key=lambda f: wanted.index(f.digest))),
        )

    async def _delete_one(self, name: str, digest: str) -> DeleteFailure | None:
        answer = await self._http.request(
            "DELETE", f"/v2/{name}/manifests/{digest}", scope=self._scope(name, "delete")
        )
        if answer.status in (200, 202, 404):  # 404: already gone, the state we wanted
            return None
        code = answer.error_code()
        why = f"DELETE answered {answer.status} {code}"
        if answer.status == 405:
            why += ": the registry does not allow deletes (distribution: storage.delete.enabled)"
        return DeleteFailure(digest, code, why)

    async def _hold(
        self, name: str, digest: str, kept_by: set[str], listing: Listing
    ) -> DeleteFailure:
        """An index still lists the digest: keep the manifest, remove its tags."""
        index = min(kept_by)
        tags = listing.tags_of(digest)
        message = f"index {index[:19]} still lists it"
        if not tags:
            return DeleteFailure(digest, REFERENCED, message, FailureKind.REFERENCED)
        for tag in tags:
            refused = await self.untag(Repository(name), tag)
            if refused is not None:
                return DeleteFailure(digest, UNTAG_REFUSED, f"{message}; {refused}")
        message = f"{message}: kept, tags {','.join(tags)} removed"
        return DeleteFailure(digest, UNTAGGED, message, FailureKind.REFERENCED)

    async def untag(self, repository: Repository, tag: str) -> str | None:
        """Remove one tag, its manifest kept: push a throwaway manifest to the tag, then
        delete the throwaway by digest. None when done, else why it could not be."""
        name = repository.name
        scope = self._scope(name, "pull,push,delete")
        blob = await self._ensure_blob(name, EMPTY_JSON, scope)
        if blob is not None:
            return f"cannot untag {tag}: the registry refused the empty blob ({blob})"
        body = _throwaway(tag)
        put = await self._http.request(
            "PUT",
            f"/v2/{name}/manifests/{quote(tag, safe='')}",
            scope=scope,
            headers={"Content-Type": OCI_MANIFEST},
            data=body,
        )
        if put.status not in (200, 201):
            return (
                f"cannot untag {tag}: the registry refused a throwaway manifest on it "
                f"(PUT {put.status} {put.error_code()}) and offers no other way to remove one tag"
            )
        throwaway = put.headers.get("Docker-Content-Digest") or digest_of(body)
        gone = await self._delete_one(name, throwaway)
        return (
            None
            if gone is None
            else f"tag {tag} now names a throwaway {throwaway[:19]}: {gone.message}"
        )

    async def _ensure_blob(self, name: str, body: bytes, scope: str) -> str | None:
        """A monolithic upload (POST, then PUT with the digest: spec end-4a, end-6)."""
        digest = digest_of(body)
        head = await self._http.request("HEAD", f"/v2/{name}/blobs/{digest}", scope=scope)
        if head.status == 200:
            return None
        start = await self._http.request("POST", f"/v2/{name}/blobs/uploads/", scope=scope)
        location = start.headers.get("Location") if start.status == 202 else None
        if not location:
            return f"POST {start.status} {start.error_code()}"
        url = f"{location}{'&' if '?' in location else '?'}digest={quote(digest)}"
        if "://" not in url:
            url = self._http.base_url + url
        put = await self._http.request(
            "PUT", url, scope=scope, headers={"Content-Type": "application/octet-stream"}, data=body
        )
        return None if put.status == 201 else f"PUT {put.status} {put.error_code()}"

    # --- listing -----------------------------------------------------------------------------

    async def _listing(self, name: str) -> Listing:
        """Tags, their manifests, what indexes list, and referrers, as present now; then
        the subjects those referrers and cosign tags name, when present only by digest."""
        tags = await paged(
            self._fetcher(self._scope(name, "pull"), name), f"/v2/{name}/tags/list", "tags"
        )
        heads = await self._gather(self._resolve(name, tag) for tag in tags)
        listing = Listing(tags={t: d for t, d in zip(tags, heads, strict=True) if d})
        await self._expand(name, listing, list(dict.fromkeys(listing.tags.values())))
        for tag, digest in listing.tags.items():
            subject = fallback_subject(tag)
            if subject and digest in listing.manifests:
                listing.subjects[digest] = subject
        for _ in range(MAX_SUBJECT_ROUNDS):
            missing = [s for s in _subjects(listing) if s not in listing.manifests]
            if not missing or not await self._expand(name, listing, missing):
                break
        return listing

    async def _expand(self, name: str, listing: Listing, pending: list[str]) -> bool:
        """Read `pending` and everything they list or the referrers API names, breadth
        first; whether anything new was found."""
        grew = False
        while pending:
            found = await self._gather(self._manifest(name, d) for d in pending)
            fresh = [m for m in found if m is not None and m.digest not in listing.manifests]
            listing.manifests.update((m.digest, m) for m in fresh)
            grew = grew or bool(fresh)
            children = [c for m in fresh for c in m.children if c not in listing.manifests]
            referrers = await self._api_referrers(name, listing, fresh)
            pending = list(dict.fromkeys([*children, *referrers]))
        return grew

    async def _api_referrers(self, name: str, listing: Listing, fresh: list[Manifest]) -> list[str]:
        """Referrers of the manifests just read, through the API when the registry has one."""
        if self._referrers_api is False or not fresh:
            return []
        repository = Repository(name)
        answers = []
        if self._referrers_api is None:  # one probe, not one 404 per manifest
            answers.append(await self.referrers(repository, fresh[0].digest))
            fresh = fresh[1:] if self._referrers_api else []
        answers += await self._gather(self.referrers(repository, m.digest) for m in fresh)
        return [d for found in answers if found for d in found if d not in listing.manifests]

    async def _resolve(self, name: str, tag: str) -> str | None:
        """The digest a tag names now (HEAD, `Docker-Content-Digest`); None if it is gone."""
        answer = await self._http.request(
            "HEAD",
            f"/v2/{name}/manifests/{quote(tag, safe='')}",
            scope=self._scope(name, "pull"),
            headers={"Accept": ACCEPT},
        )
        if answer.status == 404:
            return None
        if answer.status != 200:
            raise failed(answer, f"HEAD {name}:{tag}", name)
        digest = answer.headers.get("Docker-Content-Digest")
        if digest:
            return str(digest)
        manifest = await self._get_manifest(name, quote(tag, safe=""))
        return manifest.digest if manifest else None

    async def _manifest(self, name: str, digest: str) -> Manifest | None:
        """By digest, from the cache (a digest's manifest never changes) or the registry."""
        cached = self._manifests.get(digest)
        if cached is None:
            cached = await self._get_manifest(name, digest)
            if cached is not None:
                self._manifests.put(digest, cached)
        return cached

    async def _get_manifest(self, name: str, reference: str) -> Manifest | None:
        answer = await self._http.request(
            "GET",
            f"/v2/{name}/manifests/{reference}",
            scope=self._scope(name, "pull"),
            headers={"Accept": ACCEPT},
        )
        if answer.status == 404:
            return None
        if answer.status != 200:
            raise failed(answer, f"GET manifest {name}@{reference}", name)
        digest = str(answer.headers.get("Docker-Content-Digest") or digest_of(answer.body))
        return Manifest.parse(digest, answer.body, answer.headers.get("Content-Type", ""))

    # --- images and their ages ---------------------------------------------------------------

    async def _images(self, name: str, listing: Listing, *, record: bool = True) -> list[Image]:
        recorded = await self._recorded.times(name) or {}
        ages = await self._ages_of(name, listing, recorded)
        if self._first_seen is not None:
            seen = {d: a.at for d, a in ages.items()}
            observed = await asyncio.to_thread(self._observe, name, seen, record)
            ages = {d: age.Age(observed.get(d, a.at), FIRST_SEEN) for d, a in ages.items()}
        tags = listing.tags_by_digest()
        return [
            Image(
                digest=m.digest,
                tags=tags.get(m.digest, ()),
                pushed_at=ages[m.digest].at,
                size=m.size,
                media_type=m.media_type,
                artifact_media_type=m.artifact_type,
                subject=m.subject or listing.subjects.get(m.digest),
                age_from=ages[m.digest].source,
                last_pulled_at=recorded[m.digest].pulled if m.digest in recorded else None,
            )
            for m in listing.manifests.values()
        ]

    def _observe(self, name: str, seen: dict[str, datetime], record: bool) -> dict[str, datetime]:
        assert self._first_seen is not None  # noqa: S101 - the caller checked
        if record:
            return self._first_seen.observe(name, seen)
        return self._first_seen.lookup(name, seen)

    async def _ages_of(
        self, name: str, listing: Listing, recorded: dict[str, Times]
    ) -> dict[str, age.Age]:
        """Every manifest's age: the registry's push record, else its own annotation or
        config, an index its newest child, a referrer without either its subject's (it
        follows the subject anyway, and an artifact counted as new forever would be
        protected forever)."""
        now = self._clock()
        ages = {d: age.Age(t.pushed, age.PUSHED) for d, t in recorded.items()}
        todo = [m for m in listing.manifests.values() if m.digest not in ages]
        single = [m for m in todo if not m.is_index]
        await self._read_configs(name, single)
        for manifest in single:
            config = manifest.readable_config()
            found = age.annotation_age(manifest.doc) or (self._ages.get(config) if config else None)
            if found is not None:
                ages[manifest.digest] = found
        for manifest in _innermost_first([m for m in todo if m.is_index]):
            found = age.annotation_age(manifest.doc) or age.newest_child_age(
                ages[c] for c in manifest.children if c in ages
            )
            if found is not None:
                ages[manifest.digest] = found
        for digest, manifest in listing.manifests.items():
            subject = manifest.subject or listing.subjects.get(digest)
            if digest not in ages and subject in ages:
                ages[digest] = age.of_subject(ages[subject])
        return {d: ages.get(d) or age.unknown_age(now) for d in listing.manifests}

    async def _read_configs(self, name: str, manifests: list[Manifest]) -> None:
        """The `created` of every config not read yet, each distinct config once."""
        configs = (m.readable_config() for m in manifests)
        unread = list({c: None for c in configs if c and c not in self._ages})
        read = await self._gather(self._config_age(name, c) for c in unread)
        for config, found in zip(unread, read, strict=True):
            self._ages.put(config, found)

    async def _config_age(self, name: str, digest: str) -> age.Age | None:
        answer = await self._http.request(
            "GET", f"/v2/{name}/blobs/{digest}", scope=self._scope(name, "pull")
        )
        if answer.status != 200:
            log.warning("%s: config %s unreadable (%s)", name, digest[:19], answer.status)
            return None
        try:
            config = json.loads(answer.body)
        except ValueError:
            return None
        return age.config_age(config) if isinstance(config, dict) else None

    # --- plumbing ----------------------------------------------------------------------------

    def _scope(self, name: str, actions: str) -> str:
        return f"repository:{name}:{actions}"

    def _fetcher(
        self, scope: str, name: str = ""
    ) -> Callable[[str], Awaitable[tuple[bytes, str | None]]]:
        async def fetch(path: str) -> tuple[bytes, str | None]:
            answer = await self._http.request("GET", path, scope=scope)
            if answer.status != 200:
                raise failed(answer, f"GET {path.split('?')[0]}", name)
            return answer.body, answer.headers.get("Link")

        return fetch

    async def _gather(self, calls: Iterable[Awaitable[_T]]) -> list[_T]:
        """Run the calls at most PARALLEL at a time, results in order."""
        slots = asyncio.Semaphore(PARALLEL)

        async def one(call: Awaitable[_T]) -> _T:
            async with slots:
                return await call

        return list(await asyncio.gather(*(one(c) for c in calls)))


def _subjects(listing: Listing) -> list[str]:
    """Every subject named by a referrer, a fallback index or a cosign tag. One present only
    by its digest (an image pushed untagged, then signed) is an image too: without it, its
    signature would look orphaned and be deleted while the image is still there."""
    named = [m.subject for m in listing.manifests.values()]
    named += [*listing.subjects.values(), *(cosign_subject(t) for t in listing.tags)]
    return list(dict.fromkeys(s for s in named if s))


def _is_index(listing: Listing, digest: str) -> bool:
    manifest = listing.manifests.get(digest)
    return manifest is not None and manifest.is_index


def _innermost_first(indexes: list[Manifest]) -> list[Manifest]:
    """Indexes that list other indexes after those (rare: nested indexes)."""
    digests = {m.digest for m in indexes}
    return sorted(indexes, key=lambda m: sum(c in digests for c in m.children))


def _throwaway(tag: str) -> bytes:
    """A unique manifest of empty descriptors: it shares no digest with anything."""
    empty = {"mediaType": EMPTY_TYPE, "digest": digest_of(EMPTY_JSON), "size": len(EMPTY_JSON)}
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": empty,
        "layers": [empty],
        "annotations": {"vnd.ecr-cleaner.untag": f"{tag} {uuid.uuid4()}"},
    }
    return json.dumps(doc, separators=(",", ":")).encode()
