"""Differential tests: the planner, the engine and a real sweep against tests/reference.py.

Hypothesis builds random repositories on the emulator's store (tagged and untagged images,
tags that move, multi-arch indexes sharing platform manifests, buildx attestations, cosign
signatures, OCI referrers, orphans of both kinds) and random valid policy files (ECR rules,
protections, safety). Then:

- (a) `plan_repository` with the graph `build_graph` makes from the pushed manifests gives
  every image the reference's verdict;
- (b) a real sweep (`Engine.run(apply=True)` over HTTP against the emulator) reports the
  reference's verdicts and leaves exactly the reference's kept set in the registry (or
  everything, when `max_deletions` stops it).
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cleaner.emulator import (
    RegistryStore,
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
)
from cleaner.emulator.manifests import Platform
from cleaner.engine import Engine, SweepRequest
from cleaner.planning.graph import build_graph
from cleaner.planning.manifest_links import manifest_facts
from cleaner.planning.model import Image, Plan
from cleaner.planning.planner import plan_repository
from cleaner.planning.policy_file import PolicyFile, parse_policy_file
from cleaner.registries.ecr import EcrRegistry
from tests.support.aws_examples import EXAMPLES
from tests.support.backends import REGION
from tests.support.reference import EXPIRE, KEEP, reference_plan, reference_remaining

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PLATFORMS = (Platform("amd64"), Platform("arm64"), Platform("arm", variant="v7"))
TAGS = (
    "latest", "prod", "dev", "release-1", "release-2", "build-7", "build-42",
    "v1.0.0", "1.2.3", "v1.2.0", "v2.0.0", "2.0.0-rc.1", "v2.1.0", "v2.1.0+meta", "1.10.0",
    "sha256-123.sig",  # looks like cosign, is not (the hex is too short): an ordinary tag
)  # fmt: skip
PATTERNS = ("release-*", "v*", "build-*", "*", "prod", "sha256-*", "*.sig", "v2.*", "*-rc*")
PREFIXES = ("release-", "v", "build", "sha256-", "dev", "1.")
COUNT_TYPES = ("imageCountMoreThan",) * 2 + ("sinceImagePushed",) * 2 + ("sinceImagePulled",)
PROTECT_GLOBS = ("prod", "release-*", "v2.*", "build-?", "latest", "sha256-*")
PROTECT_REGEX = (r"build-\d+", r"v\d+\.\d+\.\d+", r"1\..*")


# --- repositories --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Push:
    """One PutImage (plus its extra tags and a recorded pull)."""

    manifest: str
    tags: tuple[str, ...]
    age: timedelta
    pulled: timedelta | None = None


HOURS = (240, 168, 145, 144, 120, 96, 72, 49, 48, 47, 25, 24, 23, 12, 1, 0)


@st.composite
def ages(draw: st.DrawFn) -> timedelta:
    """Whole hours over ten days, often on or next to a day boundary (ties happen too), and
    sometimes some minutes past the hour (inside or outside a 30m or 1h grace period)."""
    hours = draw(st.sampled_from(HOURS) | st.integers(0, 240))
    return timedelta(hours=hours, minutes=draw(st.sampled_from((0, 0, 0, 20, 59))))


@st.composite
def scenarios(draw: st.DrawFn) -> list[Push]:
    """A push history; parents always exist before their dependents, so links form no cycle."""
    seeds = itertools.count()
    pushes: list[Push] = []
    children: list[str] = []  # platform manifests, for indexes to share

    def tags(most: int = 3) -> tuple[str, ...]:
        return tuple(draw(st.lists(st.sampled_from(TAGS), max_size=most, unique=True)))

    def pulled() -> timedelta | None:
        return draw(st.none() | st.sampled_from(HOURS).map(lambda h: timedelta(hours=h)))

    def push(manifest: str, tags: tuple[str, ...] = (), age: timedelta | None = None) -> None:
        pushes.append(Push(manifest, tags, draw(ages()) if age is None else age, pulled()))

    def a_subject() -> str:
        """The manifest text of something pushed, or of something never pushed (an orphan)."""
        gone = make_manifest(f"gone-{next(seeds)}")
        return draw(st.sampled_from([*(p.manifest for p in pushes), gone]))

    kinds = ("image", "image", "index", "signature", "referrer")
    for kind in draw(st.lists(st.sampled_from(kinds), max_size=12)):
        if kind == "image":
            push(make_manifest(f"image-{next(seeds)}", oci=draw(st.booleans())), tags())
        elif kind == "index":
            age = draw(ages())
            oci = draw(st.booleans())
            shared = (
                draw(st.lists(st.sampled_from(children), max_size=2, unique=True))
                if children
                else []
            )
            fresh: list[str] = []
            for _ in range(draw(st.integers(0 if shared else 1, 2))):
                fresh.append(make_manifest(f"child-{next(seeds)}", oci=oci))
                push(fresh[-1], tags(1) if draw(st.integers(0, 2)) == 0 else (), age)
            entries = [
                descriptor(m, platform=PLATFORMS[k % 3]) for k, m in enumerate(shared + fresh)
            ]
            provenance: bool = draw(st.booleans())  # buildx's, for the first platform
            if fresh and provenance:
                platform_digest = digest_of(fresh[0])
                attestation = attestation_manifest(platform_digest, seed=next(seeds))
                push(attestation, (), age)
                entries.append(attestation_descriptor(attestation, platform_digest))
            children += fresh
            unique = {"org.opencontainers.image.ref.name": f"index-{next(seeds)}"}
            push(index_manifest(entries, oci=oci, annotations=unique), tags(2), age)
        elif kind == "signature":
            subject = digest_of(a_subject())
            suffix = draw(st.sampled_from(("sig", "att", "sbom")))
            extra = tags(1) if draw(st.integers(0, 3)) == 0 else ()  # then just an image
            signature = cosign_signature_manifest(subject, seed=next(seeds))
            push(signature, (cosign_tag(subject, suffix), *extra))
        else:
            referrer = referrer_manifest(a_subject(), seed=next(seeds))
            push(referrer, tags(1) if draw(st.integers(0, 2)) == 0 else ())
    return pushes


def seed(store: RegistryStore, repository: str, pushes: list[Push]) -> None:
    store.create_repository(repository)
    for p in pushes:
        digest = store.put_image(
            repository, p.manifest, tag=p.tags[0] if p.tags else None, pushed_at=NOW - p.age
        )
        for tag in p.tags[1:]:
            store.put_image(repository, p.manifest, tag=tag)
        if p.pulled is not None:
            store.record_pull(repository, digest, NOW - p.pulled)


def contents(store: RegistryStore, repository: str) -> tuple[list[Image], dict[str, str]]:
    """The images (as DescribeImages shows them) and their manifest texts."""
    repo = store.repository(repository)
    return store.images(repository), {d: i.manifest for d, i in repo.images.items()}


# --- policies ------------------------------------------------------------------------------


@st.composite
def rule_bodies(draw: st.DrawFn) -> dict[str, Any]:
    """countType, countNumber and action; valid pairings only."""
    count = draw(st.sampled_from(COUNT_TYPES))
    if count == "imageCountMoreThan":
        body: dict[str, Any] = {"countType": count, "countNumber": draw(st.integers(1, 3))}
    else:
        body = {"countType": count, "countUnit": "days", "countNumber": draw(st.integers(1, 6))}
    transition = count == "sinceImagePulled" or draw(st.integers(0, 5)) == 0
    action = {"type": "transition", "targetStorageClass": "archive"} if transition else None
    return {"selection": body, "action": action or {"type": "expire"}}


@st.composite
def rule_lists(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A valid ECR rule list: unique priorities and tag sets, one untagged rule, any last."""
    filters = st.one_of(
        st.lists(st.sampled_from(PATTERNS), min_size=1, max_size=2, unique=True).map(
            lambda p: ("tagPatternList", frozenset(p))
        ),
        st.lists(st.sampled_from(PREFIXES), min_size=1, max_size=2, unique=True).map(
            lambda p: ("tagPrefixList", frozenset(p))
        ),
    )
    selections: list[dict[str, Any]] = [
        {"tagStatus": "tagged", kind: sorted(entries)}
        for kind, entries in draw(st.lists(filters, max_size=3, unique=True))
    ]
    if draw(st.booleans()):
        selections.append({"tagStatus": "untagged"})
    rules = []
    for selection in selections:
        body = draw(rule_bodies())
        rules.append(body | {"selection": selection | body["selection"]})
    if draw(st.integers(0, 4)) == 0:  # an archive rule never touches an active image
        rules.append(
            {
                "selection": {
                    "tagStatus": "any",
                    "storageClass": "archive",
                    "countType": "sinceImageTransitioned",
                    "countUnit": "days",
                    "countNumber": 1,
                },
                "action": {"type": "expire"},
            }
        )
    rules = draw(st.permutations(rules))
    priorities = sorted(draw(st.lists(st.integers(1, 40), min_size=len(rules), unique=True)))
    numbered = [{"rulePriority": p} | r for p, r in zip(priorities, rules, strict=False)]
    if draw(st.integers(0, 3)) > 0 or not numbered:
        body = draw(rule_bodies())
        selection = {"tagStatus": "any"} | body["selection"]
        numbered.append({"rulePriority": 41, "selection": selection, "action": body["action"]})
    return numbered


@st.composite
def policy_files(draw: st.DrawFn) -> PolicyFile:
    protect: dict[str, Any] = {}
    sometimes = st.integers(0, 2).map(lambda k: k == 0)  # each protection in one of three
    if draw(sometimes):
        protect["tags"] = draw(st.lists(st.sampled_from(PROTECT_GLOBS), min_size=1, max_size=2))
    if draw(sometimes):
        protect["tag_regex"] = draw(
            st.lists(st.sampled_from(PROTECT_REGEX), min_size=1, max_size=2)
        )
    if draw(sometimes):
        per = draw(st.sampled_from(("none", "major", "minor")))
        protect["semver"] = {"keep": draw(st.integers(1, 3)), "per": per}
    newer_than = draw(st.sampled_from((None, "0s", "30m", "1h", "2d")))
    if newer_than is not None:
        protect["newer_than"] = newer_than
    pulled_within = draw(st.sampled_from((None, None, "1d", "3d")))
    if pulled_within is not None:
        protect["pulled_within"] = pulled_within
    safety: dict[str, Any] = {}
    keep_at_least = draw(st.sampled_from((None, 0, 1, 3)))
    if keep_at_least is not None:
        safety["keep_at_least"] = keep_at_least
    if draw(st.integers(0, 3)) == 0:
        safety["max_deletions"] = draw(st.integers(1, 6))
    doc = {
        "repositories": [{"match": "*", "rules": draw(rule_lists())}],
        "protect": protect | {"in_use": False},
        "safety": safety,
    }
    return parse_policy_file(doc, "generated")


def lifecycle_of(policy: PolicyFile) -> Any:
    entry = policy.entry_for("any/repository")
    assert entry is not None and entry.lifecycle is not None
    return entry.lifecycle


def expected(
    policy: PolicyFile, images: list[Image], manifests: Mapping[str, str]
) -> dict[str, str]:
    return reference_plan(
        images, manifests, lifecycle_of(policy), policy.protect, policy.safety, NOW
    )


# --- the reference itself, on the documented examples --------------------------------------


@pytest.mark.parametrize(
    ("repository", "rules", "expired"),
    [pytest.param(repo, rules, want, id=title) for title, repo, rules, want in EXAMPLES],
)
def test_the_reference_gives_the_aws_worked_examples(
    repository: list[tuple[str, list[str], int]], rules: list[dict[str, Any]], expired: set[str]
) -> None:
    images = [
        Image(f"sha256:{name}", tuple(tags), NOW - timedelta(hours=hours))
        for name, tags, hours in repository
    ]
    manifests = {i.digest: make_manifest(i.digest) for i in images}
    policy = parse_policy_file(
        {
            "repositories": [{"match": "*", "rules": rules}],
            "protect": {"newer_than": "0s"},
            "safety": {"keep_at_least": 0},
        }
    )
    verdict = expected(policy, images, manifests)
    assert {d.removeprefix("sha256:") for d, v in verdict.items() if v == EXPIRE} == expired


def test_the_reference_lets_dependents_follow_their_parents() -> None:
    """An index keeps its platforms and attestation; an expired image takes its signature,
    an SBOM of the signature, and orphans go; a tagged platform pinned by `prod` stays."""
    store, repo = RegistryStore(), "app"
    amd, arm = make_manifest("amd"), make_manifest("arm")
    attestation = attestation_manifest(digest_of(amd))
    entries = [descriptor(amd, platform=PLATFORMS[0]), descriptor(arm, platform=PLATFORMS[1])]
    entries.append(attestation_descriptor(attestation, digest_of(amd)))
    old, old_prod = make_manifest("old"), make_manifest("old-prod")
    old_index = index_manifest([descriptor(old_prod, platform=PLATFORMS[0])])
    signature = cosign_signature_manifest(digest_of(old))
    pushes = [
        Push(amd, (), timedelta(days=1)),
        Push(arm, (), timedelta(days=1)),
        Push(attestation, (), timedelta(days=1)),
        Push(index_manifest(entries), ("v2.0.0",), timedelta(days=1)),
        Push(old, ("v1.0.0",), timedelta(days=5)),
        Push(signature, (cosign_tag(digest_of(old)),), timedelta(days=5)),
        Push(referrer_manifest(signature), (), timedelta(days=5)),
        Push(referrer_manifest(make_manifest("never pushed")), (), timedelta(days=5)),
        Push(old_prod, ("prod",), timedelta(days=6)),
        Push(old_index, ("v0.9.0",), timedelta(days=6)),
    ]
    seed(store, repo, pushes)
    rules = [
        {
            "rulePriority": 1,
            "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 1},
            "action": {"type": "expire"},
        }
    ]
    policy = parse_policy_file(
        {"repositories": [{"match": "*", "rules": rules}], "protect": {"tags": ["prod"]}}
    )
    verdict = expected(policy, *contents(store, repo))
    kept = {digest_of(m) for m in (amd, arm, attestation, index_manifest(entries), old_prod)}
    assert {d for d, v in verdict.items() if v == KEEP} == kept


# --- (a) the planner -----------------------------------------------------------------------


def engine_plan(policy: PolicyFile, images: list[Image], manifests: Mapping[str, str]) -> Plan:
    """The planner, with the artifact graph `build_graph` makes from the manifests."""
    children = {i.digest: manifest_facts(manifests[i.digest]).children for i in images}
    graph = build_graph(images, {d: c for d, c in children.items() if c}, {})
    return plan_repository(
        "app", images, lifecycle_of(policy), NOW, policy.protect, policy.safety, graph=graph
    )


def assert_same(plan: Plan, want: dict[str, str]) -> None:
    actual = {d.image.digest: d.verdict.value for d in plan.decisions}
    disagreements = [
        f"{d.image.digest[:19]} tags={list(d.image.tags)} engine={d.verdict.value} "
        f"reference={want.get(d.image.digest)}: {d.reason}"
        for d in plan.decisions
        if d.verdict.value != want.get(d.image.digest)
    ]
    assert actual == want, "\n".join(disagreements)


@settings(max_examples=500, deadline=None)
@given(pushes=scenarios(), policy=policy_files())
def test_the_plan_is_the_reference_verdict(pushes: list[Push], policy: PolicyFile) -> None:
    store = RegistryStore()
    seed(store, "app", pushes)
    images, manifests = contents(store, "app")
    assert_same(engine_plan(policy, images, manifests), expected(policy, images, manifests))


@pytest.mark.parametrize("version", ["v1.0.0", "v3.0.0"], ids=["lower", "higher"])
def test_a_versioned_platform_manifest_is_not_a_release(version: str) -> None:
    """Versions rank among top-level images only: ranking a dependent's versions on their
    own would keep a second "top 1" (the property above found it once). A platform manifest
    tagged with a version, lower or higher than the releases', is not kept by `semver` and
    follows its expired index."""
    store = RegistryStore()
    child = make_manifest("child")
    index = index_manifest([descriptor(child, platform=PLATFORMS[0])])
    release = make_manifest("release")
    pushes = [
        Push(child, (version,), timedelta(days=3)),
        Push(index, ("old",), timedelta(days=3)),
        Push(release, ("v2.0.0",), timedelta(days=2)),
    ]
    seed(store, "app", pushes)
    keep_one = {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 1}
    rule = {"rulePriority": 1, "selection": keep_one, "action": {"type": "expire"}}
    policy = parse_policy_file(
        {
            "repositories": [{"match": "*", "rules": [rule]}],
            "protect": {"semver": {"keep": 1}, "newer_than": "0s"},
            "safety": {"keep_at_least": 0},
        }
    )
    images, manifests = contents(store, "app")
    want = expected(policy, images, manifests)
    assert want == {digest_of(child): EXPIRE, digest_of(index): EXPIRE, digest_of(release): KEEP}
    assert_same(engine_plan(policy, images, manifests), want)


# --- (b) a real sweep ----------------------------------------------------------------------


@dataclass
class Sweeper:
    store: RegistryStore
    registry: EcrRegistry
    names: itertools.count[int]


@pytest.fixture
async def sweeper() -> AsyncIterator[Sweeper]:
    """One emulator and one client for all examples; each example gets a new repository."""
    store = RegistryStore()
    async with (
        running(store) as url,
        EcrRegistry.connect(region=REGION, endpoint_url=url) as registry,
    ):
        yield Sweeper(store, registry, itertools.count())


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],  # shared on purpose
)
@given(pushes=scenarios(), policy=policy_files())
async def test_a_sweep_leaves_exactly_the_reference_kept_set(
    sweeper: Sweeper, pushes: list[Push], policy: PolicyFile
) -> None:
    repository = f"diff/repo-{next(sweeper.names)}"
    seed(sweeper.store, repository, pushes)
    images, manifests = contents(sweeper.store, repository)
    want = expected(policy, images, manifests)

    request = SweepRequest(policy=policy, now=NOW, repositories=(repository,), apply=True)
    (report,) = (await Engine(sweeper.registry).run(request)).repositories

    assert report.plan is not None
    assert_same(report.plan, want)
    remaining = reference_remaining(images, want, policy.safety)
    assert set(sweeper.store.digests(repository)) == remaining
    assert report.failed == ()
    planned = sorted(d for d, v in want.items() if v == EXPIRE)
    limit = policy.safety.max_deletions
    braked = limit is not None and len(planned) > limit
    assert (report.error is not None) == braked, report.error
    assert sorted(report.deleted) == ([] if braked else planned)
