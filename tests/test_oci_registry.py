"""The OCI adapter against a real CNCF distribution registry (Debian's docker-registry).

Every image is pushed over HTTP as a client would (blobs, then the manifest), and every
outcome is read back from the registry itself, not from the adapter.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cleaner.engine import Engine, SweepRequest
from cleaner.planning.model import FailureKind, Repository, RunReport, Verdict
from cleaner.planning.policy_file import parse_policy_file
from cleaner.planning.references import parse_reference
from cleaner.registries.oci import OciRegistry
from cleaner.registries.oci.first_seen import FirstSeen
from tests.support.oci import Pusher, binary, running_registry
from tests.support.oci_auth import LOGIN, gated
from tests.support.policies import keep_newest_rule

NOW = datetime.now(UTC)  # the adapter's clock too: an image with no created time is "now"
_names = itertools.count()


def fresh(prefix: str = "app") -> str:
    """A repository of the test's own on the shared registry."""
    return f"t{next(_names)}/{prefix}"


def day(n: int) -> str:
    return f"2026-11-{n:02d}T00:00:00Z"


@pytest.fixture
async def registry(distribution: str) -> AsyncIterator[OciRegistry]:
    async with OciRegistry.connect(distribution) as opened:
        yield opened


async def sweep(
    registry: OciRegistry, name: str, doc: dict[str, Any], apply: bool = True
) -> RunReport:
    policy = parse_policy_file(doc)
    request = SweepRequest(policy=policy, now=NOW, repositories=(name,), apply=apply)
    return await Engine(registry).run(request)


def keep(count: int, **protect: Any) -> dict[str, Any]:
    return {
        "repositories": [{"match": "*", "rules": [keep_newest_rule(count)]}],
        "protect": {"newer_than": "0s", "in_use": False, **protect},
        "safety": {"keep_at_least": 0},
    }


def test_without_the_binary_the_tests_fail_and_say_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(pytest.fail.Exception, match="install Debian package docker-registry"):
        binary(search=str(tmp_path))


async def test_keep_2_by_config_created_leaves_the_two_newest_tags(
    distribution: str, registry: OciRegistry
) -> None:
    push, name = Pusher(distribution), fresh()
    # Pushed out of age order: only the config's created time can rank them.
    for tag, created in [("a", day(3)), ("b", day(1)), ("c", day(4)), ("d", day(2))]:
        push.image(name, tag, created=created)

    report = await sweep(registry, name, keep(2))

    assert report.ok, report
    assert push.tags(name) == ["a", "c"]
    reasons = {d.image.tags: d.image.age_from for d in report.repositories[0].plan.decisions}
    assert set(reasons.values()) == {"config created"}


async def test_a_kept_multi_arch_index_keeps_its_platform_manifests(
    distribution: str, registry: OciRegistry
) -> None:
    push, name = Pusher(distribution), fresh()
    old = [push.image(name, None, created=day(1), arch=a) for a in ("amd64", "arm64")]
    push.index(name, "old", old)
    new = [push.image(name, None, created=day(5), arch=a) for a in ("amd64", "arm64")]
    index = push.index(name, "new", new)
    push.image(name, "single", created=day(3))

    report = await sweep(registry, name, keep(1))

    assert report.ok, report
    assert push.tags(name) == ["new"]
    assert all(push.exists(name, child) for child in [index, *new])
    assert not any(push.exists(name, child) for child in old)


async def test_protect_tags_holds(distribution: str, registry: OciRegistry) -> None:
    push, name = Pusher(distribution), fresh()
    for tag, created in [("stable", day(1)), ("b", day(2)), ("c", day(3)), ("d", day(4))]:
        push.image(name, tag, created=created)

    report = await sweep(registry, name, keep(1, tags=["stable"]))

    assert report.ok, report
    assert push.tags(name) == ["d", "stable"]


async def test_the_annotation_wins_over_the_config_and_a_pinned_time_is_not_trusted(
    distribution: str, registry: OciRegistry
) -> None:
    push, name = Pusher(distribution), fresh()
    annotated = push.image(
        name, "annotated", created=day(1),
        annotations={"org.opencontainers.image.created": day(9)},
    )  # fmt: skip
    pinned = push.image(name, "pinned", created="1970-01-01T00:00:00Z")
    children = [push.image(name, None, created=day(d), arch=str(d)) for d in (2, 6)]
    index = push.index(name, "multi", children)

    images = {i.digest: i for i in await registry.images(Repository(name))}

    assert (images[annotated].age_from, images[annotated].pushed_at.day) == (
        "annotation created",
        9,
    )
    assert (images[index].age_from, images[index].pushed_at.day) == ("newest child", 6)
    # A reproducible build's 1970 would make it the oldest: it counts as new instead.
    assert images[pinned].age_from == "no created time, taken as"
    assert images[pinned].pushed_at > datetime(2026, 1, 1, tzinfo=UTC)


async def test_deleting_a_child_its_index_still_lists_is_refused_here(
    distribution: str, registry: OciRegistry
) -> None:
    """distribution itself would delete it and leave the index dangling."""
    push, name = Pusher(distribution), fresh()
    child = push.image(name, None, created=day(1))
    push.index(name, "multi", [child])

    result = await registry.delete(Repository(name), [child])

    assert result.deleted == ()
    assert [(f.code, f.kind) for f in result.failed] == [
        ("REFERENCED_BY_INDEX", FailureKind.REFERENCED)
    ]
    assert push.exists(name, child)


async def test_an_index_and_its_child_in_one_batch_go_index_first(
    distribution: str, registry: OciRegistry
) -> None:
    push, name = Pusher(distribution), fresh()
    child = push.image(name, None, created=day(1))
    index = push.index(name, "multi", [child])

    result = await registry.delete(Repository(name), [child, index])

    assert result.deleted == (child, index) and result.failed == ()
    assert not push.exists(name, child) and not push.exists(name, index)


async def test_untag_only_removes_the_tag_and_keeps_the_manifest_an_index_needs(
    distribution: str, registry: OciRegistry
) -> None:
    push, name = Pusher(distribution), fresh()
    child = push.image(name, "amd64-only", created=day(1))
    index = push.index(name, "multi", [child])

    result = await registry.delete(Repository(name), [child])

    assert [(f.code, f.kind) for f in result.failed] == [("UNTAGGED_ONLY", FailureKind.REFERENCED)]
    assert push.tags(name) == ["multi"]
    assert push.exists(name, child) and push.exists(name, index)


async def test_untag_of_a_shared_image_leaves_its_other_tags(
    distribution: str, registry: OciRegistry
) -> None:
    push, name = Pusher(distribution), fresh()
    image = push.image(name, "one", created=day(1))
    push.manifest(name, "two", _manifest_of(push, name, image))

    assert await registry.untag(Repository(name), "one") is None

    assert push.tags(name) == ["two"]
    assert push.exists(name, image)


async def test_a_registry_that_allows_neither_untag_way_gives_a_per_image_failure(
    tmp_path: Path,
) -> None:
    with running_registry(tmp_path) as url:
        push, name = Pusher(url), "ro/app"
        child = push.image(name, "amd64-only", created=day(1))
        push.index(name, "multi", [child])
    with running_registry(tmp_path, readonly=True) as url:  # the same storage, now read-only
        async with OciRegistry.connect(url) as registry:
            result = await registry.delete(Repository(name), [child])
        assert [f.code for f in result.failed] == ["UNTAG_REFUSED"]
        assert "refused the empty blob" in result.failed[0].message
        assert Pusher(url).tags(name) == ["amd64-only", "multi"]


async def test_referrers_through_the_fallback_tag_follow_their_subject(
    distribution: str, registry: OciRegistry
) -> None:
    push, name = Pusher(distribution), fresh()
    old = push.image(name, "old", created=day(1))
    new = push.image(name, "new", created=day(2))
    for subject in (old, new):
        signature = push.image(
            name, None, subject=subject, artifact_type="application/vnd.example.signature"
        )
        push.index(name, "sha256-" + subject.removeprefix("sha256:"), [signature])
    by_subject = {
        s: push.image(name, None, subject=s, artifact_type="x", salt="attached") for s in (old,)
    }

    report = await sweep(registry, name, keep(1))

    assert report.ok, report
    assert push.tags(name) == ["new", "sha256-" + new.removeprefix("sha256:")]
    decisions = {d.image.digest: d for d in report.repositories[0].plan.decisions}
    expired = {d for d, one in decisions.items() if one.verdict is Verdict.EXPIRE}
    assert old in expired and len(expired) == 3  # the image, its fallback index, its signature
    assert by_subject[old] not in decisions  # listed by no index, tag or API: invisible


async def test_referrers_from_the_referrers_api_follow_their_subject(distribution: str) -> None:
    """distribution 2.8 has no referrers API, so the front in `oci_auth` answers it, the
    way a registry with one would; the referrers themselves are real manifests."""
    push, name = Pusher(distribution), fresh()
    old = push.image(name, "old", created=day(1))
    push.image(name, "new", created=day(2))
    signature = push.image(name, None, subject=old, artifact_type="application/vnd.example.sig")
    async with gated(distribution) as gate:
        gate.referrers = {old: [signature]}
        async with OciRegistry.connect(gate.url, login=LOGIN) as registry:
            report = await sweep(registry, name, keep(1))

    assert report.ok, report
    assert push.tags(name) == ["new"]
    assert not push.exists(name, signature)
    expired = [d.image.digest for d in report.repositories[0].plan.expire]
    assert set(expired) == {old, signature}


async def test_harbors_push_time_wins_over_created_times(distribution: str) -> None:
    """Harbor is not installable here: our front answers its v2.0 API over the real
    registry; the artifacts' push times say the opposite of their config created times."""
    push, name = Pusher(distribution), fresh() + "/deep"  # Harbor: project t<n>, repo app/deep
    first = push.image(name, "first", created=day(9))
    second = push.image(name, "second", created=day(1))
    never = "0001-01-01T00:00:00.000Z"
    async with gated(distribution) as gate:
        gate.harbor = {
            name: [
                {"digest": first, "push_time": "2026-11-02T10:00:00.123Z", "pull_time": never},
                {
                    "digest": second,
                    "push_time": "2026-11-03T10:00:00.000Z",
                    "pull_time": "2026-11-20T08:00:00.000Z",
                },
            ]
        }
        async with OciRegistry.connect(gate.url, login=LOGIN) as registry:
            images = {i.digest: i for i in await registry.images(Repository(name))}
            report = await sweep(registry, name, keep(1))

    assert images[first].age_from == "pushed" and images[first].pushed_at.day == 2
    assert images[first].last_pulled_at is None
    assert images[second].last_pulled_at == datetime(2026, 11, 20, 8, tzinfo=UTC)
    assert report.ok, report
    assert push.tags(name) == ["second"]
    probes = [path for _, path in gate.requests if path.endswith("/systeminfo")]
    assert probes == ["/api/v2.0/systeminfo"]  # asked once per registry, not per listing


async def test_githubs_package_versions_give_ghcr_push_times(
    distribution: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GHCR is not reachable here: our front answers GitHub's Packages API beside the real
    registry, for a user's package (the organization path 404s first), in pages."""
    push, name = Pusher(distribution), fresh() + "/svc"
    owner, package = name.split("/", 1)
    digests = [push.image(name, f"v{i}", created=day(20 - i)) for i in range(3)]
    versions = [
        {"id": i, "name": d, "created_at": f"2026-11-0{i + 1}T00:00:00Z", "updated_at": day(28)}
        for i, d in enumerate(digests)
    ]
    monkeypatch.setattr("cleaner.registries.oci.github.PER_PAGE", 2)  # so 3 versions page
    async with gated(distribution) as gate:
        gate.github = {f"users/{owner}/{package}": versions}
        async with OciRegistry.connect(gate.url, login=LOGIN, github_api=gate.url) as registry:
            images = {i.digest: i for i in await registry.images(Repository(name))}
            report = await sweep(registry, name, keep(1))

    assert [images[d].pushed_at.day for d in digests] == [1, 2, 3]
    assert {i.age_from for i in images.values()} == {"pushed"}
    assert report.ok, report
    assert push.tags(name) == ["v2"]  # the newest push, though its config is the oldest
    asked = [path.split("/")[1] for _, path in gate.requests if path.endswith("/versions")]
    assert asked[:3] == ["orgs", "users", "users"]  # a user's package, in two pages
    assert "orgs" not in asked[3:]  # learnt: the next listings ask the users path only


async def test_cosign_signature_tags_follow_their_image(
    distribution: str, registry: OciRegistry
) -> None:
    push, name = Pusher(distribution), fresh()
    old = push.image(name, "old", created=day(1))
    push.image(name, "new", created=day(2))
    push.image(name, "sha256-" + old.removeprefix("sha256:") + ".sig", created=day(3))

    report = await sweep(registry, name, keep(1))

    assert report.ok, report
    assert push.tags(name) == ["new"]


async def test_listing_follows_link_pages_and_a_tags_list_that_ignores_n(
    distribution: str,
) -> None:
    from cleaner.registries.oci import paging

    push = Pusher(distribution)
    names = [fresh("paged") for _ in range(3)]
    for name in names:
        push.image(name, "v1", created=day(1))
    for tag in ("v2", "v3"):
        push.image(names[0], tag, created=day(2))
    async with OciRegistry.connect(distribution) as registry:
        fetch = registry._fetcher("registry:catalog:*")
        catalog = await paging.paged(fetch, "/v2/_catalog", "repositories", page_size=1)
        tags = await paging.paged(fetch, f"/v2/{names[0]}/tags/list", "tags", page_size=1)
    assert set(names) <= set(catalog) and len(catalog) == len(set(catalog))
    assert tags == ["v1", "v2", "v3"]


async def test_an_unknown_repository_fails_as_not_found(registry: OciRegistry) -> None:
    report = await sweep(registry, "no/such", keep(1))
    assert report.repositories[0].error is not None
    assert "not found" in report.repositories[0].error


async def test_the_first_seen_record_fixes_ages_from_the_first_listing(
    distribution: str, tmp_path: Path
) -> None:
    push, name = Pusher(distribution), fresh()
    pinned = push.image(name, "pinned", created="1970-01-01T00:00:00Z")
    dated = push.image(name, "dated", created=day(1))
    path = tmp_path / "first-seen.json"
    async with OciRegistry.connect(distribution, first_seen=FirstSeen(path)) as registry:
        first = {i.digest: i for i in await registry.images(Repository(name))}
    async with OciRegistry.connect(distribution, first_seen=FirstSeen(path)) as registry:
        again = {i.digest: i for i in await registry.images(Repository(name))}

    assert {i.age_from for i in first.values()} == {"first seen"}
    assert first[dated].pushed_at == datetime(2026, 11, 1, tzinfo=UTC)  # seeded by created
    assert again[pinned].pushed_at == first[pinned].pushed_at  # read back, not now again
    push.call("DELETE", f"/v2/{name}/manifests/{dated}")
    async with OciRegistry.connect(distribution, first_seen=FirstSeen(path)) as registry:
        await registry.images(Repository(name))
    assert len(FirstSeen(path)) == 1  # the deleted digest's entry went with it


def test_matches_the_same_host_port_and_path() -> None:
    registry = OciRegistry.__new__(OciRegistry)
    registry.host = "127.0.0.1:5000"
    repository = Repository("team/app")
    assert registry.matches(_ref("127.0.0.1:5000/team/app:v1"), repository)
    assert not registry.matches(_ref("127.0.0.1:5001/team/app:v1"), repository)
    assert not registry.matches(_ref("127.0.0.1:5000/team/other:v1"), repository)
    registry.host = "registry-1.docker.io"
    assert registry.matches(_ref("team/app:v1"), repository)


def _ref(text: str) -> Any:
    ref = parse_reference(text)
    assert ref is not None
    return ref


def _manifest_of(push: Pusher, name: str, digest: str) -> dict[str, Any]:
    import json

    status, _, body = push.call("GET", f"/v2/{name}/manifests/{digest}")
    assert status == 200
    doc: dict[str, Any] = json.loads(body)
    return doc


async def test_an_age_rules_reason_names_where_the_age_came_from(
    distribution: str, registry: OciRegistry
) -> None:
    push, name = Pusher(distribution), fresh()
    push.image(name, "old", created="2025-01-01T00:00:00Z")
    rule = {
        "rulePriority": 1,
        "selection": {
            "tagStatus": "any",
            "countType": "sinceImagePushed",
            "countUnit": "days",
            "countNumber": 30,
        },
        "action": {"type": "expire"},
    }
    doc = {**keep(1), "repositories": [{"match": "*", "rules": [rule]}]}
    report = await sweep(registry, name, doc, apply=False)
    [decision] = report.repositories[0].plan.decisions
    assert decision.verdict is Verdict.EXPIRE
    assert decision.reason.startswith("expired by rule 1: config created "), decision.reason


async def test_a_signature_of_an_image_pushed_only_by_digest_is_not_an_orphan(
    distribution: str, registry: OciRegistry
) -> None:
    """An image pushed untagged, then signed: no tag leads to it, but its signature does.
    Taken for an orphan, the signature would go while the image (run by digest) stays."""
    push, name = Pusher(distribution), fresh()
    push.image(name, "v1", created=day(1))
    push.image(name, "v2", created=day(2))
    by_digest = push.image(name, None, created=day(3), salt="by digest")
    signature = "sha256-" + by_digest.removeprefix("sha256:") + ".sig"
    push.image(name, signature, created=day(3), salt="signature")
    rule = {
        "rulePriority": 1,
        "selection": {
            "tagStatus": "tagged",
            "tagPrefixList": ["v"],
            "countType": "imageCountMoreThan",
            "countNumber": 1,
        },
        "action": {"type": "expire"},
    }
    report = await sweep(
        registry, name, {**keep(1), "repositories": [{"match": "*", "rules": [rule]}]}
    )

    assert report.ok, report
    assert push.tags(name) == [signature, "v2"]
    assert push.exists(name, by_digest)
    assert by_digest in {d.image.digest for d in report.repositories[0].plan.keep}
