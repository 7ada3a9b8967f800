"""Protections and safety: they only turn expire into keep, each with its own reason."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cleaner.planning.model import Image, LifecyclePolicy, Verdict
from cleaner.planning.planner import evaluate, plan_repository
from cleaner.planning.protections import (
    NO_PROTECTIONS,
    NO_SAFETY,
    Protections,
    Safety,
    Screen,
    SemverKeep,
    semver_top,
)
from cleaner.planning.units import parse_duration
from tests.support.planning import NOW, image, policies, policy, rule

KEEP_1 = policy(rule(1, n=1))  # any, imageCountMoreThan 1


def verdicts(
    images: list[Image], protect: Protections, safety: Safety = NO_SAFETY
) -> dict[str, str]:
    plan = plan_repository("repo", images, KEEP_1, NOW, protect, safety)
    return {
        d.image.digest.removeprefix("sha256:"): d.reason
        for d in plan.decisions
        if d.verdict is Verdict.KEEP
    }


@pytest.mark.parametrize(
    ("protect", "images", "kept"),
    [
        pytest.param(
            Protections(tags=("prod", "release-*"), newer_than=timedelta(0)),
            [
                image("new", ["main-3"], 1),
                image("p", ["prod"], 5),
                image("r", ["release-2"], 6),
                image("o", ["x"], 7),
            ],
            {
                "new": "kept by",
                "p": "protected: tag prod,",
                "r": "protected: tag release-2 matches release-*",
            },
            id="a protected tag glob keeps an image the count rule would expire",
        ),
        pytest.param(
            Protections(tag_regex=(re.compile(r"v\d+\.\d+\.\d+"),), newer_than=timedelta(0)),
            [
                image("new", ["x"], 1),
                image("v", ["v1.2.3"], 5),
                image("partial", ["v1.2.3-rc1"], 6),
            ],
            {"new": "kept by", "v": "protected: tag v1.2.3 matches regex"},
            id="a tag regex must match the whole tag",
        ),
        pytest.param(
            Protections(semver=SemverKeep(keep=2), newer_than=timedelta(0)),
            [
                image("hotfix", ["1.4.9"], 1),  # pushed last, but not among the highest
                image("v2-1", ["v2.1.0"], 3),
                image("v2-0", ["v2.0.0"], 4),
                image("v1-4", ["1.4.8"], 5),
            ],
            {
                "hotfix": "kept by",
                "v2-1": "protected: semver top 2 (v2.1.0)",
                "v2-0": "protected: semver top 2",
            },
            id="semver keeps the highest versions, not the latest pushes",
        ),
        pytest.param(
            Protections(semver=SemverKeep(keep=1, per="major"), newer_than=timedelta(0)),
            [
                image("a", ["x"], 1),
                image("b", ["2.0.1"], 2),
                image("c", ["2.0.0"], 3),
                image("d", ["1.9.0"], 4),
            ],
            {"a": "kept by", "b": "semver top 1 of 2.x", "d": "semver top 1 of 1.x"},
            id="semver per major keeps the top of every major line",
        ),
        pytest.param(
            Protections(newer_than=timedelta(hours=1)),
            [image("a", ["x"], 0.01), image("b", ["y"], 0.02), image("c", ["z"], 0.5)],
            {"a": "kept by", "b": "protected: pushed 28m ago (grace 1h)"},
            id="the grace period keeps fresh pushes",
        ),
        pytest.param(
            Protections(pulled_within=timedelta(days=30), newer_than=timedelta(0)),
            [
                image("a", ["x"], 1),
                image("b", ["y"], 90, pulled=3),
                image("c", ["z"], 90, pulled=45),
            ],
            {"a": "kept by", "b": "protected: pulled 3d ago (within 30d)"},
            id="a recent pull keeps an old image",
        ),
    ],
)
def test_each_protection(protect: Protections, images: list[Image], kept: dict[str, str]) -> None:
    actual = verdicts(images, protect)
    assert set(actual) == set(kept)
    for name, reason in kept.items():
        assert reason in actual[name], actual[name]


def test_protected_reason_names_the_rule_that_would_have_expired() -> None:
    reasons = verdicts([image("a", ["x"], 1), image("b", ["prod"], 2)], Protections(tags=("prod",)))
    assert reasons["b"] == "protected: tag prod, rule 1 would expire it"


def test_keep_at_least_keeps_the_newest_images() -> None:
    everything_old = policy(rule(1, count="sinceImagePushed", n=1))
    images = [image(str(i), [f"t{i}"], 2 + i) for i in range(5)]
    plan = plan_repository(
        "repo", images, everything_old, NOW, NO_PROTECTIONS, Safety(keep_at_least=2)
    )
    kept = [d.image.digest for d in plan.keep]
    assert kept == ["sha256:0", "sha256:1"]
    assert all(d.reason.startswith("protected: keep_at_least 2") for d in plan.keep)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("15m", 900),
        ("2h", 7200),
        ("30d", 2592000),
        ("0s", 0),
        ("1w", 7 * 86400),
        ("1h30m", 5400),
        ("2d12h", 2.5 * 86400),
        ("1.5h", 5400),
        ("1.1h", 3960),  # exact: not 3960.0000000000005
        ("5h 2s", 18002),
        ("1w 2d 3h 4m 5.5s", 9 * 86400 + 3 * 3600 + 4 * 60 + 5.5),
        ("720h", 30 * 86400),
        ("5214w2d", 36_500 * 86400),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    "text",
    # "\u0663d": an Arabic-Indic digit, which Python's \d matches; a policy's digits are ASCII.
    ["2 h", "h", "-1h", "", " ", "1.h", ".5h", "1e3s", "30m1h", "1h1h", "1h  30m", "\u0663d", 5],
)
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["36501d", "5215w", "5214w2d1s", "876001h", "36500d0.5s"])
def test_compound_durations_keep_the_century_bound(text: str) -> None:
    with pytest.raises(ValueError, match="longer than 36500 days"):
        parse_duration(text)


def test_semver_accepts_a_v_prefix_and_ignores_other_tags() -> None:
    top = semver_top(
        [image("a", ["v1.0.0", "latest", "1.0"]), image("b", ["0.9.0-rc.1"])], SemverKeep(5)
    )
    assert set(top) == {"v1.0.0", "0.9.0-rc.1"}


# -- properties -----------------------------------------------------------------------------

TAGS = ["prod", "release-1", "main-1", "x", "v1.0.0", "1.2.3", "2.0.0", "v2.0.1-rc.1", "0.1.0"]


@st.composite
def repositories(draw: st.DrawFn) -> list[Image]:
    count = draw(st.integers(0, 12))
    return [
        Image(
            digest=f"sha256:{i:02d}",
            tags=tuple(draw(st.lists(st.sampled_from(TAGS), max_size=3, unique=True))),
            pushed_at=NOW - timedelta(minutes=draw(st.integers(0, 60 * 24 * 9))),
            last_pulled_at=draw(
                st.none() | st.integers(0, 40).map(lambda d: NOW - timedelta(days=d))
            ),
        )
        for i in range(count)
    ]


protections = st.builds(
    Protections,
    tags=st.lists(st.sampled_from(["prod", "release-*", "v*"]), max_size=2).map(tuple),
    tag_regex=st.lists(st.sampled_from([r"\d+\.\d+\.\d+", "main-.*"]), max_size=1).map(
        lambda rs: tuple(re.compile(r) for r in rs)
    ),
    semver=st.none()
    | st.builds(
        SemverKeep, keep=st.integers(1, 3), per=st.sampled_from(["none", "major", "minor"])
    ),
    newer_than=st.integers(0, 48).map(lambda h: timedelta(hours=h)),
    pulled_within=st.none() | st.integers(1, 30).map(lambda d: timedelta(days=d)),
)
safeties = st.builds(Safety, keep_at_least=st.integers(0, 4))


@settings(max_examples=200, deadline=None)
@given(images=repositories(), pol=policies(), protect=protections, safety=safeties)
def test_property_protections_only_turn_expire_into_keep(
    images: list[Image], pol: LifecyclePolicy, protect: Protections, safety: Safety
) -> None:
    plain = {d.image.digest: d for d in evaluate(images, pol, NOW)}
    plan = plan_repository("repo", images, pol, NOW, protect, safety)
    top = semver_top(images, protect.semver)
    for decision in plan.decisions:
        before = plain[decision.image.digest]
        if decision.verdict is Verdict.EXPIRE:
            # nothing protected is ever planned for expiry
            assert Screen(protect, top, NOW).reason(decision.image) is None
            assert before.verdict is Verdict.EXPIRE
        elif before.verdict is Verdict.EXPIRE:
            assert decision.reason.startswith("protected: ")
    assert len(plan.keep) >= min(safety.keep_at_least, len(images))


@settings(max_examples=200, deadline=None)
@given(images=repositories(), pol=policies())
def test_property_without_protections_the_plan_is_plain_ecr(
    images: list[Image], pol: LifecyclePolicy
) -> None:
    plan = plan_repository("repo", images, pol, NOW, NO_PROTECTIONS, NO_SAFETY)
    assert list(plan.decisions) == evaluate(images, pol, NOW)
