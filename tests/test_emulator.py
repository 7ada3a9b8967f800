"""The ECR emulator, driven through the real aiobotocore client over HTTP where it matters."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiobotocore.session import get_session
from botocore.config import Config
from botocore.exceptions import ClientError

from cleaner.emulator import (
    EcrError,
    Platform,
    RegistryStore,
    Throttle,
    TokenBucket,
    attestation_descriptor,
    attestation_manifest,
    cosign_signature_manifest,
    cosign_tag,
    descriptor,
    digest_of,
    index_manifest,
    make_manifest,
    referrer_manifest,
    running,
    seed_demo,
    seed_names,
    seed_store,
    serve,
)
from cleaner.emulator.manifests import DOCKER_LIST, OCI_INDEX, SPDX, parse_manifest
from cleaner.emulator.paging import SeqIndex
from cleaner.planning.model import INDEX_MEDIA_TYPES

REPO = "app/api"
T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
POLICY = json.dumps(
    {
        "rules": [
            {
                "rulePriority": 1,
                "description": "keep one",
                "selection": {
                    "tagStatus": "any",
                    "countType": "imageCountMoreThan",
                    "countNumber": 1,
                },
                "action": {"type": "expire"},
            }
        ]
    }
)


@asynccontextmanager
async def ecr_client(store: RegistryStore, **app_options: Any) -> AsyncIterator[Any]:
    """A real aiobotocore ECR client against `store`, retries off so errors surface."""
    config = Config(retries={"mode": "standard", "total_max_attempts": 1})
    async with (
        running(store, **app_options) as url,
        get_session().create_client(
            "ecr",
            region_name="us-east-1",
            endpoint_url=url,
            aws_access_key_id="x",
            aws_secret_access_key="x",
            config=config,
        ) as client,
    ):
        yield client


@pytest.fixture
def store() -> RegistryStore:
    store = RegistryStore()
    store.create_repository(REPO)
    return store


@pytest.fixture
async def ecr(store: RegistryStore) -> AsyncIterator[Any]:
    async with ecr_client(store) as client:
        yield client


def push(store: RegistryStore, seed: object, *tags: str, minutes: int = 0, **kw: Any) -> str:
    when = T0 + timedelta(minutes=minutes)
    digest = store.put_image(REPO, make_manifest(seed, **kw), pushed_at=when)
    for tag in tags:
        store.add_tag(REPO, digest, tag)
    return digest


def push_multi_arch(store: RegistryStore) -> tuple[str, list[str]]:
    """amd64 + arm64 manifests, one attestation each, then the index: (index, children)."""
    entries, children = [], []
    for arch, size in (("amd64", 3000), ("arm64", 5000)):
        text = make_manifest(arch, layers=(size,), oci=True)
        child = store.put_image(REPO, text)
        attestation = attestation_manifest(child)
        store.put_image(REPO, attestation)
        entries += [
            descriptor(text, platform=Platform(arch)),
            attestation_descriptor(attestation, child),
        ]
        children += [child, digest_of(attestation)]
    index = store.put_image(REPO, index_manifest(entries, oci=True), tag="multi")
    return index, children


def error_code(info: pytest.ExceptionInfo[ClientError]) -> str:
    return str(info.value.response["Error"]["Code"])


# -- manifests and the store, directly -------------------------------------------------------


def test_digest_is_sha256_of_the_exact_manifest_bytes() -> None:
    text = make_manifest("x", layers=(10, 20), config_size=5)
    store = RegistryStore()
    store.create_repository("a/b")
    import hashlib

    assert store.put_image("a/b", text) == "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    assert parse_manifest(str(text)) == text.info  # the builder's shortcut agrees with parsing
    assert text.info.size == 35


def test_tag_move_leaves_the_previous_image_untagged(store: RegistryStore) -> None:
    old = store.put_image(REPO, make_manifest(1), tag="latest")
    new = store.put_image(REPO, make_manifest(2), tag="latest")
    assert store.tags(REPO) == {"latest": new}
    by_digest = {i.digest: i for i in store.images(REPO)}
    assert by_digest[old].tags == () and by_digest[new].tags == ("latest",)


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"manifest": make_manifest(1)}, "ImageAlreadyExistsException"),
        ({"manifest": make_manifest(2), "tag": "v1"}, "ImageTagAlreadyExistsException"),
        (
            {"manifest": make_manifest(2), "digest": "sha256:" + "0" * 64},
            "ImageDigestDoesNotMatchException",
        ),
        ({"manifest": "{not json"}, "InvalidParameterException"),
        ({"manifest": '{"schemaVersion": 2}'}, "InvalidParameterException"),
        ({"manifest": make_manifest(3), "media_type": OCI_INDEX}, "InvalidParameterException"),
    ],
    ids=["same-untagged", "immutable-tag", "digest-mismatch", "bad-json", "no-type", "wrong-type"],
)
def test_put_image_rejections(kwargs: dict[str, Any], code: str) -> None:
    store = RegistryStore()
    store.create_repository("locked/repo", tag_mutability="IMMUTABLE")
    store.put_image("locked/repo", make_manifest(1), tag="v1")
    store.put_image("locked/repo", make_manifest(0), tag="v2")
    with pytest.raises(EcrError) as info:
        store.put_image("locked/repo", **kwargs)
    assert info.value.code == code
    assert len(store.digests("locked/repo")) == 2 and store.tags("locked/repo")["v1"]


def test_index_needs_its_children_in_the_repository(store: RegistryStore) -> None:
    child = make_manifest("orphan")
    with pytest.raises(EcrError, match="referencing images") as info:
        store.put_image(REPO, index_manifest([descriptor(child)]))
    assert info.value.code == "ReferencedImagesNotFoundException"


def test_bulk_seed_of_100k_images() -> None:
    store = RegistryStore()
    store.create_repository("bulk/repo")
    for i in range(100_000):
        store.put_image("bulk/repo", make_manifest(i), tag=f"b{i}" if i % 3 == 0 else None)
    assert len(store.repos["bulk/repo"].images) == 100_000
    assert len(store.tags("bulk/repo")) == 33_334


def test_seq_index_resumes_after_removals_and_compaction() -> None:
    index = SeqIndex()
    for i in range(3000):
        index.add(f"k{i}")
    for i in range(0, 3000, 3):
        index.remove(f"k{i}")
    for i in range(1, 3000, 3):
        index.remove(f"k{i}")  # crosses the compaction threshold
    survivors = [k for _, k in index.iter_from(0)]
    assert survivors == [f"k{i}" for i in range(2, 3000, 3)]
    assert [k for _, k in index.iter_from(2999)] == ["k2999"]


def test_token_bucket_allows_burst_then_refills_at_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(2, clock=lambda: now[0])
    assert [bucket.take() for _ in range(3)] == [True, True, False]
    now[0] += 0.5
    assert bucket.take() and not bucket.take()
    throttle = Throttle({"*": 0.5, "ListImages": 100}, clock=lambda: now[0])
    assert throttle.allow("DescribeImages") and not throttle.allow("DescribeImages")
    assert throttle.allow("BatchDeleteImage")  # the wildcard is a bucket per operation
    assert Throttle().allow("DescribeImages")


def test_demo_seed_is_realistic_and_deterministic() -> None:
    first, second = RegistryStore(), RegistryStore()
    seed_demo(first, T0)
    seed_demo(second, T0)
    assert sorted(seed_names()) == ["demo", "none"]
    assert {n: first.digests(n) for n in first.repos} == {
        n: second.digests(n) for n in second.repos
    }
    images = [i for n in first.repos for i in first.images(n)]
    assert 150 <= len(images) <= 400
    assert any(not i.tags for i in images)
    assert any(t.endswith(".sig") and t.startswith("sha256-") for i in images for t in i.tags)
    assert any(i.subject for i in images)
    indexes = [i for i in images if i.media_type in INDEX_MEDIA_TYPES]
    assert len(indexes) == 11 and all(i.size > 0 for i in indexes)
    assert all(i.pushed_at < T0 for i in images)
    with pytest.raises(ValueError, match="unknown seed"):
        seed_store(RegistryStore(), "nope", T0)


# -- repositories over HTTP ----------------------------------------------------------------


async def test_repository_not_found_has_the_real_wire_shape(ecr: Any) -> None:
    with pytest.raises(ClientError) as info:
        await ecr.describe_images(repositoryName="missing/repo")
    assert error_code(info) == "RepositoryNotFoundException"
    assert info.value.response["Error"]["Message"] == (
        "The repository with name 'missing/repo' does not exist in the registry with id "
        "'123456789012'"
    )
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


async def test_repository_create_describe_delete(ecr: Any, store: RegistryStore) -> None:
    for name in ("b/one", "b/two", "b/three"):
        await ecr.create_repository(repositoryName=name)
    with pytest.raises(ClientError) as info:
        await ecr.create_repository(repositoryName=REPO)
    assert error_code(info) == "RepositoryAlreadyExistsException"
    with pytest.raises(ClientError) as info:
        await ecr.create_repository(repositoryName="Bad_Name")
    assert error_code(info) == "InvalidParameterException"
    pages = ecr.get_paginator("describe_repositories").paginate(PaginationConfig={"PageSize": 2})
    names = [r["repositoryName"] async for page in pages for r in page["repositories"]]
    assert names == [REPO, "b/one", "b/two", "b/three"]
    push(store, 1)
    with pytest.raises(ClientError) as info:
        await ecr.delete_repository(repositoryName=REPO)
    assert error_code(info) == "RepositoryNotEmptyException"
    await ecr.delete_repository(repositoryName=REPO, force=True)
    found = await ecr.describe_repositories(repositoryNames=["b/two"])
    assert [r["repositoryName"] for r in found["repositories"]] == ["b/two"]
    assert REPO not in store.repos


# -- pushing and describing ----------------------------------------------------------------


async def test_put_image_over_http_moves_the_tag(ecr: Any) -> None:
    first = await ecr.put_image(repositoryName=REPO, imageManifest=make_manifest(1), imageTag="v")
    second = await ecr.put_image(repositoryName=REPO, imageManifest=make_manifest(2), imageTag="v")
    details = (await ecr.describe_images(repositoryName=REPO))["imageDetails"]
    by_digest = {d["imageDigest"]: d for d in details}
    assert "imageTags" not in by_digest[first["image"]["imageId"]["imageDigest"]]
    assert by_digest[second["image"]["imageId"]["imageDigest"]]["imageTags"] == ["v"]
    untagged = await ecr.list_images(repositoryName=REPO, filter={"tagStatus": "UNTAGGED"})
    assert untagged["imageIds"] == [{"imageDigest": first["image"]["imageId"]["imageDigest"]}]
    with pytest.raises(ClientError) as info:
        await ecr.put_image(repositoryName=REPO, imageManifest=make_manifest(2), imageTag="v")
    assert error_code(info) == "ImageAlreadyExistsException"


async def test_image_detail_fields(ecr: Any, store: RegistryStore) -> None:
    plain = push(store, "p", "rel", layers=(100, 200), config_size=7)
    store.record_pull(REPO, plain, T0 + timedelta(days=1))
    index, _ = push_multi_arch(store)
    subject_text = store.repos[REPO].images[plain].manifest
    sbom = store.put_image(REPO, referrer_manifest(subject_text, artifact_type=SPDX))
    ids = [{"imageDigest": d} for d in (plain, index, sbom)] + [{"imageTag": "rel"}]
    details = (await ecr.describe_images(repositoryName=REPO, imageIds=ids))["imageDetails"]
    got = {d["imageDigest"]: d for d in details}
    assert len(details) == 3  # an image named twice is described once
    assert got[plain]["imageSizeInBytes"] == 307
    assert got[plain]["imagePushedAt"] == T0
    assert got[plain]["lastRecordedPullTime"] == T0 + timedelta(days=1)
    assert got[plain]["artifactMediaType"] == "application/vnd.docker.container.image.v1+json"
    assert got[index]["imageSizeInBytes"] == 5000 + 512  # max over its manifests
    assert got[index]["imageManifestMediaType"] == OCI_INDEX
    assert got[sbom]["subjectManifestDigest"] == plain
    assert got[sbom]["artifactMediaType"] == SPDX
    with pytest.raises(ClientError) as info:
        await ecr.describe_images(repositoryName=REPO, imageIds=[{"imageTag": "nope"}])
    assert error_code(info) == "ImageNotFoundException"


# -- deleting --------------------------------------------------------------------------------


async def test_deleting_one_of_two_tags_only_untags(ecr: Any, store: RegistryStore) -> None:
    digest = push(store, 1, "a", "b")
    out = await ecr.batch_delete_image(repositoryName=REPO, imageIds=[{"imageTag": "a"}])
    assert out["imageIds"] == [{"imageDigest": digest, "imageTag": "a"}]
    assert store.digests(REPO) == [digest] and store.tags(REPO) == {"b": digest}
    await ecr.batch_delete_image(repositoryName=REPO, imageIds=[{"imageTag": "b"}])
    assert store.digests(REPO) == []  # the last tag took the image with it


async def test_delete_by_digest_lists_every_deleted_id(ecr: Any, store: RegistryStore) -> None:
    tagged = push(store, 1, "x", "y")
    untagged = push(store, 2)
    ids = [{"imageDigest": tagged}, {"imageDigest": untagged}]
    out = await ecr.batch_delete_image(repositoryName=REPO, imageIds=ids)
    assert out["imageIds"] == [
        {"imageDigest": tagged, "imageTag": "x"},
        {"imageDigest": tagged, "imageTag": "y"},
        {"imageDigest": untagged},
    ]
    assert out["failures"] == [] and store.digests(REPO) == []


async def test_delete_failures_are_per_item(ecr: Any, store: RegistryStore) -> None:
    keep = push(store, 1, "keep")
    ids = [
        {"imageDigest": "sha256:" + "0" * 64},
        {"imageDigest": "not-a-digest"},
        {"imageDigest": "sha256:" + "1" * 64, "imageTag": "keep"},
        {},
    ]
    out = await ecr.batch_delete_image(repositoryName=REPO, imageIds=ids)
    assert out["imageIds"] == []
    codes = [f["failureCode"] for f in out["failures"]]
    assert codes == [
        "ImageNotFound",
        "InvalidImageDigest",
        "ImageTagDoesNotMatchDigest",
        "MissingDigestAndTag",
    ]
    assert out["failures"][0]["failureReason"] == "Requested image not found"
    assert store.digests(REPO) == [keep]


async def test_more_than_100_ids_are_rejected(ecr: Any) -> None:
    ids = [{"imageTag": f"t{i}"} for i in range(101)]
    for call in (ecr.batch_delete_image, ecr.batch_get_image, ecr.describe_images):
        with pytest.raises(ClientError) as info:
            await call(repositoryName=REPO, imageIds=ids)
        assert error_code(info) == "InvalidParameterException"
        assert "'Member must have length less than or equal to 100'" in str(info.value)


async def test_index_children_are_guarded(ecr: Any, store: RegistryStore) -> None:
    index, children = push_multi_arch(store)
    out = await ecr.batch_delete_image(repositoryName=REPO, imageIds=[{"imageDigest": children[0]}])
    assert [f["failureCode"] for f in out["failures"]] == ["ImageReferencedByManifestList"]
    ids = [{"imageDigest": children[1]}, {"imageDigest": index}, {"imageDigest": children[2]}]
    out = await ecr.batch_delete_image(repositoryName=REPO, imageIds=ids)
    # Ids run in order: the first child is still referenced, the one after the index is not.
    assert [f["imageId"]["imageDigest"] for f in out["failures"]] == [children[1]]
    assert [i["imageDigest"] for i in out["imageIds"]] == [index, children[2]]
    assert set(store.digests(REPO)) == {children[0], children[1], children[3]}


# -- pagination and filters -----------------------------------------------------------------


async def test_describe_images_pages_return_every_image_once(
    ecr: Any, store: RegistryStore
) -> None:
    digests = [push(store, i, *(["t"] if i == 3 else [])) for i in range(250)]
    pages = ecr.get_paginator("describe_images").paginate(
        repositoryName=REPO, PaginationConfig={"PageSize": 7}
    )
    seen = []
    async for page in pages:
        assert len(page["imageDetails"]) <= 7
        seen += [d["imageDigest"] for d in page["imageDetails"]]
        if len(seen) == 70:  # deleting mid-walk must neither repeat nor skip survivors
            ids = [{"imageDigest": d} for d in digests[60:80]]
            await ecr.batch_delete_image(repositoryName=REPO, imageIds=ids)
    assert seen == digests[:70] + digests[80:]
    untagged = await ecr.describe_images(
        repositoryName=REPO, filter={"tagStatus": "UNTAGGED"}, maxResults=1000
    )
    assert len(untagged["imageDetails"]) == 229 and "nextToken" not in untagged


async def test_list_images_pages_split_tags_of_one_image(ecr: Any, store: RegistryStore) -> None:
    for i in range(10):
        push(store, i, *[f"i{i}-t{k}" for k in range(i % 4)])
    pages = ecr.get_paginator("list_images").paginate(
        repositoryName=REPO, PaginationConfig={"PageSize": 3}
    )
    entries = [(e["imageDigest"], e.get("imageTag")) async for p in pages for e in p["imageIds"]]
    expected = [(i.digest, t) for i in store.images(REPO) for t in (i.tags or (None,))]
    assert entries == expected
    tagged = await ecr.list_images(repositoryName=REPO, filter={"tagStatus": "TAGGED"})
    assert len(tagged["imageIds"]) == sum(i % 4 for i in range(10))


async def test_paging_parameters_are_validated(ecr: Any, store: RegistryStore) -> None:
    push(store, 1, "t")
    push(store, 2)
    page = await ecr.describe_images(repositoryName=REPO, maxResults=1)
    bad_calls: list[tuple[Any, dict[str, Any]]] = [
        (ecr.describe_images, {"maxResults": 1001}),
        (ecr.describe_images, {"imageIds": [{"imageTag": "t"}], "nextToken": "x"}),
        (ecr.describe_images, {"imageIds": [{"imageTag": "t"}], "maxResults": 5}),
        (ecr.describe_images, {"nextToken": "garbage"}),
        (ecr.list_images, {"nextToken": page["nextToken"]}),  # a token of another listing
    ]
    for call, params in bad_calls:
        with pytest.raises(ClientError) as info:
            await call(repositoryName=REPO, **params)
        assert error_code(info) == "InvalidParameterException", params
    with pytest.raises(ClientError) as info:
        await ecr.describe_repositories(repositoryNames=[REPO], nextToken="x")
    assert error_code(info) == "InvalidParameterException"


# -- reading manifests and referrers --------------------------------------------------------


async def test_batch_get_image_honours_accepted_media_types(ecr: Any, store: RegistryStore) -> None:
    index, _ = push_multi_arch(store)
    ids = [{"imageTag": "multi"}, {"imageDigest": "sha256:" + "2" * 64}]
    out = await ecr.batch_get_image(repositoryName=REPO, imageIds=ids)
    assert out["images"] == [] and len(out["failures"]) == 2
    assert out["failures"][1]["failureCode"] == "ImageNotFound"
    out = await ecr.batch_get_image(
        repositoryName=REPO, imageIds=ids[:1], acceptedMediaTypes=[OCI_INDEX, DOCKER_LIST]
    )
    [image] = out["images"]
    assert image["imageId"] == {"imageDigest": index, "imageTag": "multi"}
    assert image["imageManifest"] == store.repos[REPO].images[index].manifest
    assert digest_of(image["imageManifest"]) == index


async def test_list_image_referrers(ecr: Any, store: RegistryStore) -> None:
    subject = push(store, "subject")
    text = store.repos[REPO].images[subject].manifest
    sbom = store.put_image(REPO, referrer_manifest(text, artifact_type=SPDX))
    sig_type = "application/vnd.cncf.notary.signature"
    sig = store.put_image(REPO, referrer_manifest(text, artifact_type=sig_type))
    store.put_image(REPO, cosign_signature_manifest(subject), tag=cosign_tag(subject))
    first = await ecr.list_image_referrers(
        repositoryName=REPO, subjectId={"imageDigest": subject}, maxResults=1
    )
    rest = await ecr.list_image_referrers(
        repositoryName=REPO, subjectId={"imageDigest": subject}, nextToken=first["nextToken"]
    )
    found = first["referrers"] + rest["referrers"]
    assert [r["digest"] for r in found] == [sbom, sig] and "nextToken" not in rest
    assert found[0]["artifactType"] == SPDX and found[0]["artifactStatus"] == "ACTIVE"
    assert found[0]["size"] == len(store.repos[REPO].images[sbom].manifest)
    only = await ecr.list_image_referrers(
        repositoryName=REPO,
        subjectId={"imageDigest": subject},
        filter={"artifactTypes": [sig_type]},
    )
    assert [r["digest"] for r in only["referrers"]] == [sig]
    with pytest.raises(ClientError) as info:
        await ecr.list_image_referrers(
            repositoryName=REPO, subjectId={"imageDigest": subject}, maxResults=51
        )
    assert error_code(info) == "InvalidParameterException"


# -- lifecycle policies ---------------------------------------------------------------------


async def test_lifecycle_policy_round_trip_and_errors(ecr: Any) -> None:
    with pytest.raises(ClientError) as info:
        await ecr.get_lifecycle_policy(repositoryName=REPO)
    assert error_code(info) == "LifecyclePolicyNotFoundException"
    put = await ecr.put_lifecycle_policy(repositoryName=REPO, lifecyclePolicyText=POLICY)
    assert put["lifecyclePolicyText"] == POLICY
    got = await ecr.get_lifecycle_policy(repositoryName=REPO)
    assert got["lifecyclePolicyText"] == POLICY
    for bad in ("x" * 120, json.dumps({"policy": "y" * 120})):
        with pytest.raises(ClientError) as info:
            await ecr.put_lifecycle_policy(repositoryName=REPO, lifecyclePolicyText=bad)
        assert error_code(info) == "InvalidParameterException"
        assert "'Lifecycle policy validation failure: " in str(info.value)
    await ecr.delete_lifecycle_policy(repositoryName=REPO)
    with pytest.raises(ClientError) as info:
        await ecr.delete_lifecycle_policy(repositoryName=REPO)
    assert error_code(info) == "LifecyclePolicyNotFoundException"


async def test_put_lifecycle_policy_uses_the_project_validator(ecr: Any) -> None:
    lifecycle = pytest.importorskip("cleaner.planning.lifecycle")
    if not hasattr(lifecycle, "parse_policy_text"):
        pytest.skip("cleaner.planning.lifecycle.parse_policy_text not available")
    bad = json.loads(POLICY)
    bad["rules"][0]["rulePriority"] = 0
    with pytest.raises(ClientError) as info:
        await ecr.put_lifecycle_policy(repositoryName=REPO, lifecyclePolicyText=json.dumps(bad))
    assert error_code(info) == "InvalidParameterException"
    assert "'Lifecycle policy validation failure: " in str(info.value)


# -- faults and plumbing --------------------------------------------------------------------


async def test_throttling_surfaces_as_throttling_exception(store: RegistryStore) -> None:
    async with ecr_client(store, throttle={"DescribeImages": 1}) as ecr:
        await ecr.describe_images(repositoryName=REPO)
        with pytest.raises(ClientError) as info:
            await ecr.describe_images(repositoryName=REPO)
        assert error_code(info) == "ThrottlingException"
        assert info.value.response["Error"]["Message"] == "Rate exceeded"
        await ecr.list_images(repositoryName=REPO)  # other operations are not limited
    assert store.rejected["ThrottlingException:DescribeImages"] == 1
    assert store.calls["DescribeImages"] == 2


async def test_injected_errors_never_half_apply(store: RegistryStore) -> None:
    async with ecr_client(store, error_rate=1.0, random_seed=1) as ecr:
        with pytest.raises(ClientError) as info:
            await ecr.create_repository(repositoryName="never/made")
    assert error_code(info) == "ServerException"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert "never/made" not in store.repos


async def test_latency_is_added_per_call(store: RegistryStore) -> None:
    async with ecr_client(store, latency_ms=60) as ecr:
        started = time.monotonic()
        await ecr.list_images(repositoryName=REPO)
        assert time.monotonic() - started >= 0.06


async def test_unknown_operation_and_stats(store: RegistryStore) -> None:
    headers = {
        "X-Amz-Target": "AmazonEC2ContainerRegistry_V20150921.FlyToTheMoon",
        "Content-Type": "application/x-amz-json-1.1",
    }
    async with running(store) as url, running(RegistryStore()) as other:
        assert url != other  # port 0 picks a free port each time
        async with aiohttp.ClientSession() as http:
            async with http.post(url + "/", data=b"{}", headers=headers) as resp:
                assert resp.status == 400
                assert resp.headers["x-amzn-ErrorType"] == "UnknownOperationException"
                assert (await resp.json(content_type=None))["__type"] == "UnknownOperationException"
            async with http.get(url + "/_emulator/stats") as resp:
                assert (await resp.json())["calls"] == {"FlyToTheMoon": 1}


async def test_concurrent_clients_share_one_registry(ecr: Any, store: RegistryStore) -> None:
    await asyncio.gather(
        *(ecr.put_image(repositoryName=REPO, imageManifest=make_manifest(i)) for i in range(20))
    )
    assert len(store.digests(REPO)) == 20


async def test_serve_logs_its_endpoint_and_runs_until_cancelled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="cleaner.emulator.server")
    task = asyncio.create_task(serve("127.0.0.1", 0, seed="demo"))
    try:
        url = ""
        for _ in range(200):
            found = re.search(r"AWS_ENDPOINT_URL_ECR=(\S+)", caplog.text)
            if found:
                url = found.group(1)
                break
            await asyncio.sleep(0.02)
        assert url.startswith("http://127.0.0.1:")
        async with get_session().create_client(
            "ecr",
            region_name="us-east-1",
            endpoint_url=url,
            aws_access_key_id="x",
            aws_secret_access_key="x",
        ) as ecr:
            repos = (await ecr.describe_repositories())["repositories"]
        assert {r["repositoryName"] for r in repos} >= {"shop/api", "platform/base"}
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
