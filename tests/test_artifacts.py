"""Loading the artifact graph: the adapter against emulator and moto, the loader with fakes."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from cleaner.clients.aws import is_unsupported
from cleaner.emulator import (
    attestation_descriptor,
    attestation_manifest,
    cosign_signature_manifest,
    cosign_tag,
    descriptor,
    digest_of,
    index_manifest,
    make_manifest,
    referrer_manifest,
)
from cleaner.engine.artifacts import ManifestCache, load_graph, needs_manifest
from cleaner.planning.manifest_links import ManifestFacts, Relation
from cleaner.planning.model import Image, Repository
from cleaner.ports import Registry
from cleaner.registries.ecr import EcrRegistry
from tests.support.backends import Backend, EmulatorBackend, MotoBackend
from tests.support.fakes import FakeRegistry

NOW = datetime(2026, 11, 1, 12, tzinfo=UTC)
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER = "application/vnd.docker.distribution.manifest.v2+json"


def push(backend: Backend, repo: str, text: str, tag: str | None = None) -> str:
    return backend.push_manifest(repo, text, tag)


def seed_artifacts(backend: Backend, repo: str) -> dict[str, str]:
    """An OCI index (2 platforms + attestation) and a Docker list sharing one platform,
    an SBOM referrer of a platform, a cosign signature of the index, and a plain image."""
    backend.create_repository(repo)
    a, b = make_manifest("amd64"), make_manifest("arm64", oci=True)
    att = attestation_manifest(digest_of(a))
    idx = index_manifest(
        [descriptor(a), descriptor(b), attestation_descriptor(att, digest_of(a))], oci=True
    )
    docker_list = index_manifest([descriptor(a)])
    texts = {"a": a, "b": b, "att": att, "sbom": referrer_manifest(b), "plain": make_manifest(9)}
    digests = {name: push(backend, repo, text) for name, text in texts.items()}
    digests["idx"] = push(backend, repo, idx, tag="v1.2")
    digests["list"] = push(backend, repo, docker_list, tag="v1.1")
    sig = cosign_signature_manifest(digests["idx"])
    digests["sig"] = push(backend, repo, sig, tag=cosign_tag(digests["idx"]))
    return digests


# -- the registry adapter -------------------------------------------------------------------


async def test_get_manifests_returns_index_texts(backend: Backend) -> None:
    backend.create_repository("app")
    a = make_manifest("a")
    oci = index_manifest([descriptor(a)], oci=True)
    docker = index_manifest([descriptor(a)])
    pushed = [push(backend, "app", t, tag=tag) for t, tag in ((a, None), (oci, "o"), (docker, "d"))]
    absent = "sha256:" + "0" * 64
    async with EcrRegistry.connect(endpoint_url=backend.endpoint_url) as registry:
        got = await registry.manifests(Repository("app"), [*pushed[1:], absent])
    assert got == {digest_of(oci): oci, digest_of(docker): docker}


async def test_get_manifests_reads_100_per_call(emulator: EmulatorBackend) -> None:
    emulator.create_repository("many")
    digests = [push(emulator, "many", make_manifest(i)) for i in range(150)]
    async with EcrRegistry.connect(endpoint_url=emulator.endpoint_url) as registry:
        got = await registry.manifests(Repository("many"), digests)
    assert set(got) == set(digests)
    assert emulator.store.calls["BatchGetImage"] == 2


async def test_list_referrers_follows_every_page(emulator: EmulatorBackend) -> None:
    emulator.create_repository("app")
    subject = make_manifest("subject", oci=True)
    push(emulator, "app", subject)
    sboms = [push(emulator, "app", referrer_manifest(subject, seed=i)) for i in range(60)]
    async with EcrRegistry.connect(endpoint_url=emulator.endpoint_url) as registry:
        assert await registry.referrers(Repository("app"), digest_of(subject)) == sboms
        assert await registry.referrers(Repository("app"), sboms[0]) == []
    assert emulator.store.calls["ListImageReferrers"] == 3  # 50 + 10, then the empty one


async def test_list_referrers_is_none_on_moto_without_retrying(
    moto: MotoBackend, caplog: pytest.LogCaptureFixture
) -> None:
    moto.create_repository("app")
    digest = push(moto, "app", make_manifest("x"))
    caplog.set_level(logging.DEBUG, logger="cleaner.clients.retry")
    async with EcrRegistry.connect(endpoint_url=moto.endpoint_url) as registry:
        assert await registry.referrers(Repository("app"), digest) is None
    assert not [r for r in caplog.records if "retry" in r.getMessage()]


def client_error(code: str, status: int) -> ClientError:
    response: Any = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, "ListImageReferrers")


@pytest.mark.parametrize(
    ("error", "unsupported"),
    [
        pytest.param(client_error("UnknownOperationException", 400), True, id="AWS: unknown op"),
        pytest.param(client_error("InternalFailure", 501), True, id="LocalStack: 501"),
        pytest.param(client_error("500", 500), True, id="moto: an HTML 500 page"),
        pytest.param(client_error("ServerException", 500), False, id="a real server fault"),
        pytest.param(client_error("ThrottlingException", 400), False, id="throttling"),
        pytest.param(client_error("502", 502), False, id="a proxy's bad gateway"),
        pytest.param(ValueError("x"), False, id="not a ClientError"),
    ],
)
def test_what_counts_as_an_unsupported_operation(error: Exception, unsupported: bool) -> None:
    assert is_unsupported(error) is unsupported


# -- the loader against both servers ----------------------------------------------------------


async def test_load_graph_links_every_kind_of_artifact(backend: Backend) -> None:
    digests = seed_artifacts(backend, "app")
    async with EcrRegistry.connect(endpoint_url=backend.endpoint_url) as registry:
        images = await registry.images(Repository("app"))
        graph = await load_graph(registry, Repository("app"), images, ManifestCache())
    assert graph.parents(digests["a"]) == {digests["idx"], digests["list"]}
    assert graph.parents(digests["b"]) == {digests["idx"]}
    assert graph.relation(digests["att"]) is Relation.ATTESTATION
    assert graph.parents(digests["sbom"]) == {digests["b"]}  # moto: from the manifest
    assert graph.relation(digests["sbom"]) is Relation.REFERRER
    assert graph.parents(digests["sig"]) == {digests["idx"]}
    assert graph.relation(digests["sig"]) is Relation.SIGNATURE
    top = {i.digest for i in graph.top_level(images)}
    assert top == {digests["idx"], digests["list"], digests["plain"]}


async def test_load_graph_reads_only_indexes_and_caches_them(emulator: EmulatorBackend) -> None:
    digests = seed_artifacts(emulator, "app")
    cache = ManifestCache()
    async with EcrRegistry.connect(endpoint_url=emulator.endpoint_url) as registry:
        images = await registry.images(Repository("app"))
        source = Recording(registry)
        await load_graph(source, Repository("app"), images, cache)
        assert source.read == {digests["idx"], digests["list"]}  # the SBOM's subject is listed
        assert source.referrer_calls == 0
        before = emulator.store.calls["BatchGetImage"]
        again = await load_graph(source, Repository("app"), images, cache)
    assert emulator.store.calls["BatchGetImage"] == before
    assert again.parents(digests["a"]) == {digests["idx"], digests["list"]}


def test_what_the_loader_reads() -> None:
    def image(media_type: str, artifact: str = "", subject: str | None = None) -> Image:
        return Image("sha256:1", (), NOW, 0, media_type, artifact, None, subject)

    oci_config = "application/vnd.oci.image.config.v1+json"
    assert needs_manifest(image("application/vnd.docker.distribution.manifest.list.v2+json"))
    assert needs_manifest(image(OCI_MANIFEST, "application/spdx+json"))
    assert needs_manifest(image(OCI_MANIFEST))  # the endpoint did not say: look
    assert not needs_manifest(image(OCI_MANIFEST, "application/spdx+json", subject="sha256:2"))
    assert not needs_manifest(image(OCI_MANIFEST, oci_config))
    assert not needs_manifest(image(DOCKER))


# -- the loader with fakes ------------------------------------------------------------------


class Recording(EcrRegistry):
    """The real adapter, noting what the loader asked of it."""

    def __init__(self, inner: EcrRegistry) -> None:
        self.__dict__.update(inner.__dict__)
        self.read: set[str] = set()
        self.referrer_calls = 0

    async def manifests(self, repository: Repository, digests: Sequence[str]) -> dict[str, str]:
        self.read.update(digests)
        return await super().manifests(repository, digests)

    async def referrers(self, repository: Repository, digest: str) -> list[str] | None:
        self.referrer_calls += 1
        return await super().referrers(repository, digest)


class FakeSource(FakeRegistry):
    """Manifests by digest (others unreadable); referrers by subject (None: no such API)."""

    def __init__(self, texts: dict[str, str], subjects: dict[str, list[str]] | None = None) -> None:
        super().__init__({})
        self.texts, self.subjects = texts, subjects
        self.asked: list[int] = []
        self.referrer_calls = 0

    async def manifests(self, repository: Repository, digests: Sequence[str]) -> dict[str, str]:
        self.asked.append(len(digests))
        return {d: self.texts[d] for d in digests if d in self.texts}

    async def referrers(self, repository: Repository, digest: str) -> list[str] | None:
        self.referrer_calls += 1
        return None if self.subjects is None else self.subjects.get(digest, [])


def oci_image(text: str, hours: float = 0, media_type: str = OCI_MANIFEST) -> Image:
    return Image(digest_of(text), (), NOW - timedelta(hours=hours), 0, media_type)


async def test_every_index_is_asked_for_in_one_request_to_the_port() -> None:
    """Batching is the adapter's: ECR reads 100 a call (tests/test_registry.py)."""
    children = [make_manifest(i) for i in range(1000)]
    indexes = [index_manifest([descriptor(c)], oci=True) for c in children]
    images = [oci_image(t, media_type="application/vnd.oci.image.index.v1+json") for t in indexes]
    images += [oci_image(c, media_type="") for c in children]
    source = FakeSource({digest_of(t): t for t in indexes})
    graph = await load_graph(source, Repository("app"), images, ManifestCache())
    assert source.asked == [1000]
    assert len(graph.top_level(images)) == 1000


async def test_an_unreadable_candidate_is_found_through_list_image_referrers() -> None:
    subject, other = make_manifest("s"), make_manifest("o")
    sbom = referrer_manifest(subject)
    images = [oci_image(subject, 1, DOCKER), oci_image(other, 2, DOCKER), oci_image(sbom)]
    source = FakeSource({}, {digest_of(subject): [digest_of(sbom)]})
    graph = await load_graph(source, Repository("app"), images, ManifestCache())
    assert graph.parents(digest_of(sbom)) == {digest_of(subject)}
    assert source.referrer_calls == 1  # newest first; stops once every candidate is found


async def test_without_list_image_referrers_the_loader_degrades_quietly() -> None:
    subject, other = make_manifest("s"), make_manifest("o")
    sbom = referrer_manifest(subject)
    images = [oci_image(subject, 1, DOCKER), oci_image(other, 2, DOCKER), oci_image(sbom)]
    source = FakeSource({})
    graph = await load_graph(source, Repository("app"), images, ManifestCache())
    assert graph.top_level(images) == images and source.referrer_calls == 1
    source.referrer_calls = 0
    await load_graph(source, Repository("app"), images, ManifestCache(), referrer_probes=0)
    assert source.referrer_calls == 0


def test_the_cache_forgets_the_least_recently_used() -> None:
    cache = ManifestCache(max_entries=2)
    cache.put("a", ManifestFacts(subject="x"))
    cache.put("b", ManifestFacts())
    assert cache.get("a") == ManifestFacts(subject="x")  # now "b" is the oldest
    cache.put("c", ManifestFacts())
    assert "b" not in cache and "a" in cache and "c" in cache and len(cache) == 2
    with pytest.raises(ValueError, match="negative"):
        ManifestCache(-1)


def test_a_cache_of_zero_entries_remembers_nothing() -> None:
    """What a one-shot plan or sweep uses: each manifest is read once anyway."""
    cache = ManifestCache(max_entries=0)
    cache.put("a", ManifestFacts(subject="x"))
    assert "a" not in cache and cache.get("a") is None and len(cache) == 0


async def test_a_small_cache_still_serves_a_large_repository() -> None:
    """Facts read in this call are used even if the cache cannot hold them all."""
    kids = [make_manifest(i) for i in range(5)]
    indexes = [index_manifest([descriptor(k)]) for k in kids]
    list_type = "application/vnd.docker.distribution.manifest.list.v2+json"
    images = [oci_image(t, media_type=list_type) for t in indexes]
    images += [oci_image(k, media_type="") for k in kids]
    cache = ManifestCache(max_entries=2)
    graph = await load_graph(
        FakeSource({digest_of(t): t for t in indexes}), Repository("r"), images, cache
    )
    assert len(graph.top_level(images)) == 5 and len(cache) == 2


def test_the_adapter_implements_the_registry_port() -> None:
    registry: Registry = EcrRegistry(client=None)  # checked by mypy, not at run time
    assert registry.batch_limit == 100
