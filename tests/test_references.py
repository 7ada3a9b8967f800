"""Image references, workload JSON -> uses, and which images of a repository they keep
(matched the way the ECR adapter matches: any endpoint of the same registry)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cleaner.in_use.workloads import workload_uses
from cleaner.planning.model import Image, Repository
from cleaner.planning.references import ImageRef, InUse, Use, in_use_protection, parse_reference
from cleaner.registries.ecr import ecr_matches, registry_key

ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
REPO = Repository("team/app", f"{ECR}/team/app", "123456789012")
D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
D3 = "sha256:" + "3" * 64
WHEN = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(f"{ECR}/team/app:v1", ImageRef(ECR, "team/app", "v1"), id="host/repo:tag"),
        pytest.param(f"{ECR}/team/app@{D1}", ImageRef(ECR, "team/app", None, D1), id="digest"),
        pytest.param(
            f"{ECR}/team/app:v1@{D1}", ImageRef(ECR, "team/app", "v1", D1), id="tag and digest"
        ),
        pytest.param(
            f"docker-pullable://{ECR}/team/app@{D1}",
            ImageRef(ECR, "team/app", None, D1),
            id="dockershim imageID",
        ),
        pytest.param(
            f"{ECR}/team/app", ImageRef(ECR, "team/app", "latest"), id="no tag means latest"
        ),
        pytest.param(f"  {ECR}/team/app:v1\n", ImageRef(ECR, "team/app", "v1"), id="whitespace"),
        pytest.param(
            f"{ECR.upper()}/team/app:V1", ImageRef(ECR, "team/app", "V1"), id="host case folds"
        ),
        pytest.param(
            f"{ECR}/team/app@{D1.upper().replace('SHA256', 'sha256')}",
            ImageRef(ECR, "team/app", None, D1),
            id="digest hex case folds",
        ),
        pytest.param(
            "localhost:5000/app:1", ImageRef("localhost:5000", "app", "1"), id="port in host"
        ),
        pytest.param("nginx", ImageRef("docker.io", "library/nginx", "latest"), id="hub library"),
        pytest.param("bitnami/redis:7", ImageRef("docker.io", "bitnami/redis", "7"), id="hub user"),
        pytest.param(
            "index.docker.io/library/nginx:1", ImageRef("docker.io", "library/nginx", "1"), id="hub"
        ),
        pytest.param("docker://sha256:" + "a" * 64, None, id="docker image ID names no repo"),
        pytest.param("sha256:" + "a" * 64, None, id="bare image ID"),
        pytest.param(f"{ECR}/Team/App:v1", None, id="uppercase path is invalid"),
        pytest.param(f"{ECR}/team app:v1", None, id="space inside"),
        pytest.param(f"{ECR}/team/app@sha256:xyz", None, id="bad digest"),
        pytest.param(f"{ECR}/team/app:-bad", None, id="bad tag"),
        pytest.param("", None, id="empty"),
        pytest.param(None, None, id="not a string"),
        pytest.param(f"{ECR}/", None, id="no path"),
    ],
)
def test_parse_reference(text: object, expected: ImageRef | None) -> None:
    assert parse_reference(text) == expected


@given(st.text(max_size=200))
def test_parsing_never_crashes(text: str) -> None:
    ref = parse_reference(text)
    assert ref is None or parse_reference(str(ref)) == ref


@given(st.from_regex(r"[a-z0-9./:@_-]{0,80}", fullmatch=True))
def test_parsing_reference_shaped_text_never_crashes(text: str) -> None:
    ref = parse_reference(text)
    assert ref is None or ref.host == ref.host.lower()


@pytest.mark.parametrize(
    "host",
    [
        "123456789012.dkr.ecr-fips.us-east-1.amazonaws.com",
        "123456789012.dkr-ecr.us-east-1.on.aws",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com:443",
    ],
)
def test_every_endpoint_of_one_registry_is_one_registry(host: str) -> None:
    assert registry_key(host) == registry_key(ECR) == "ecr:123456789012:us-east-1"


def test_other_registries_stay_apart() -> None:
    assert registry_key("123456789012.dkr.ecr.eu-west-1.amazonaws.com") != registry_key(ECR)
    assert registry_key("210987654321.dkr.ecr.us-east-1.amazonaws.com") != registry_key(ECR)
    assert registry_key("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn").startswith("ecr:")


def image(digest: str, *tags: str) -> Image:
    return Image(digest=digest, tags=tags, pushed_at=WHEN)


def use(text: str, who: str = "prod/Deployment/api") -> Use:
    ref = parse_reference(text)
    assert ref is not None
    return Use(ref, who)


IMAGES = [image(D1, "v2", "latest"), image(D2, "v1"), image(D3)]


@pytest.mark.parametrize(
    ("uses", "expected"),
    [
        pytest.param(
            [use(f"{ECR}/team/app:v1")], {D2: "in use: prod/Deployment/api"}, id="tag resolves"
        ),
        pytest.param(
            [use(f"{ECR}/team/app@{D3}")], {D3: "in use: prod/Deployment/api"}, id="digest"
        ),
        pytest.param(
            [use(f"{ECR}/team/app:v1@{D3}")],
            {D3: "in use: prod/Deployment/api"},
            id="digest wins over tag: the runtime pulls the digest",
        ),
        pytest.param(
            [use(f"{ECR}/team/app")], {D1: "in use: prod/Deployment/api"}, id="implicit latest"
        ),
        pytest.param([use(f"{ECR}/team/app:gone")], {}, id="a tag the repo no longer has"),
        pytest.param([use(f"{ECR}/team/app@{'sha256:' + '9' * 64}")], {}, id="unknown digest"),
        pytest.param([use(f"{ECR}/team/other:v1")], {}, id="another repository"),
        pytest.param(
            [use("210987654321.dkr.ecr.us-east-1.amazonaws.com/team/app:v1")],
            {},
            id="same name in another account",
        ),
        pytest.param(
            [use("123456789012.dkr.ecr-fips.us-east-1.amazonaws.com/team/app:v1")],
            {D2: "in use: prod/Deployment/api"},
            id="FIPS endpoint of the same registry",
        ),
        pytest.param([use("team/app:v1")], {}, id="Docker Hub never matches ECR"),
        pytest.param(
            [use(f"{ECR}/team/app:v1", f"ns/Pod/p{i}") for i in range(5)],
            {D2: "in use: ns/Pod/p0, ns/Pod/p1, ns/Pod/p2 +2 more"},
            id="many users: three and a count",
        ),
        pytest.param(
            [use(f"{ECR}/team/app:v1", "b/Pod/x"), use(f"{ECR}/team/app@{D2}", "a/Job/y")],
            {D2: "in use: a/Job/y, b/Pod/x"},
            id="tag and digest users of one image, sorted",
        ),
    ],
)
def test_in_use_protection(uses: list[Use], expected: dict[str, str]) -> None:
    assert in_use_protection(REPO, IMAGES, InUse.of(uses), ecr_matches) == expected


def test_a_repository_without_uri_still_matches_by_name_and_account() -> None:
    bare = Repository("team/app", "", "123456789012")
    in_use = InUse.of([use(f"{ECR}/team/app:v1"), use(f"{ECR}/team/other:v2")])
    assert in_use_protection(bare, IMAGES, in_use, ecr_matches) == {
        D2: "in use: prod/Deployment/api"
    }


def test_merge_unions_clusters() -> None:
    a = InUse.of([use(f"{ECR}/team/app:v1", "a/Pod/x")])
    b = InUse.of([use(f"{ECR}/team/app:v2", "b/Pod/y")])
    merged = InUse.merge([a, b])
    assert len(merged) == 2
    assert set(in_use_protection(REPO, IMAGES, merged, ecr_matches)) == {D1, D2}


def pod(*, spec: object = None, status: object = None) -> dict[str, object]:
    return {"metadata": {"namespace": "prod", "name": "api-1"}, "spec": spec, "status": status}


def test_a_pod_yields_every_container_kind_and_status_digest() -> None:
    spec = {
        "containers": [{"image": f"{ECR}/team/app:v1"}],
        "initContainers": [{"image": f"{ECR}/team/init:1"}],
        "ephemeralContainers": [{"image": "busybox"}],
    }
    status = {
        "phase": "Running",
        "containerStatuses": [{"image": f"{ECR}/team/app:v1", "imageID": f"{ECR}/team/app@{D1}"}],
        "initContainerStatuses": [{"imageID": f"docker-pullable://{ECR}/team/init@{D2}"}],
        "ephemeralContainerStatuses": [{"imageID": "docker://sha256:" + "f" * 64}],
    }
    uses = workload_uses("Pod", pod(spec=spec, status=status))
    assert {u.who for u in uses} == {"prod/Pod/api-1 (running)"}
    assert {str(u.ref) for u in uses} == {
        f"{ECR}/team/app:v1",
        f"{ECR}/team/app@{D1}",
        f"{ECR}/team/init:1",
        f"{ECR}/team/init@{D2}",
        "docker.io/library/busybox:latest",
    }


A1 = {"image": "a:1"}


@pytest.mark.parametrize(
    ("kind", "obj", "who"),
    [
        pytest.param(
            "Deployment",
            {"spec": {"replicas": 0, "template": {"spec": {"containers": [A1]}}}},
            "prod/Deployment/api-1 (scaled to 0)",
            id="deployment scaled to 0",
        ),
        pytest.param(
            "CronJob",
            {
                "spec": {
                    "jobTemplate": {
                        "spec": {"template": {"spec": {"containers": [{"image": "a:1"}]}}}
                    }
                }
            },
            "prod/CronJob/api-1",
            id="cronjob",
        ),
    ],
)
def test_templates(kind: str, obj: dict[str, object], who: str) -> None:
    obj["metadata"] = {"namespace": "prod", "name": "api-1"}
    assert {(str(u.ref), u.who) for u in workload_uses(kind, obj)} == {
        ("docker.io/library/a:1", who)
    }


@pytest.mark.parametrize(
    "obj",
    [
        {},
        {"spec": None, "status": None},
        {"spec": {"containers": None}},
        {"spec": {"containers": ["nginx", 3, None, {"image": 7}]}},
        {"spec": {"containers": [{"image": "UPPER CASE"}]}, "status": {"phase": 3}},
        {"metadata": [], "spec": [], "status": "x"},
    ],
)
def test_odd_objects_yield_what_they_can(obj: dict[str, object]) -> None:
    for kind in ("Pod", "Deployment", "CronJob"):
        assert workload_uses(kind, obj) == frozenset()
