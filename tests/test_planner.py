"""The evaluator against the AWS worked examples, edge cases and a naive reference."""

from __future__ import annotations

import random
import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cleaner.planning.model import (
    ActionType,
    CountType,
    Decision,
    Image,
    LifecyclePolicy,
    Rule,
    TagStatus,
    Verdict,
    newest_first,
)
from cleaner.planning.planner import evaluate, plan_repository
from tests.support.planning import DAY, NOW, image, policies, policy, repositories, rule


def name(decision: Decision) -> str:
    return decision.image.digest.removeprefix("sha256:")


def expired(images: Iterable[Image], pol: LifecyclePolicy) -> set[str]:
    return {name(d) for d in evaluate(images, pol, NOW) if d.verdict is Verdict.EXPIRE}


def reasons(images: Iterable[Image], pol: LifecyclePolicy) -> dict[str, str]:
    return {name(d): d.reason for d in evaluate(images, pol, NOW)}


# --- The six AWS worked examples ("Examples of lifecycle policies in Amazon ECR"), each with
# the current pattern lists and with the pre-2024 prefix lists, which the archived page says
# give the same result.

M_REPO = [
    image("A", ["beta-1", "prod-1"], 10),
    image("B", ["beta-2", "prod-2"], 9),
    image("C", ["beta-3"], 8),
]
T_A_REPO = [
    image("A", ["alpha-1"], 12),
    image("B", ["beta-1"], 11),
    image("C", ["alpha-2", "beta-2"], 10),
    image("D", ["alpha-3"], 4),
    image("E", ["beta-3"], 3),
    image("F", ["alpha-4", "beta-4"], 2),
]
T_B_REPO = [
    image("A", ["alpha-1", "beta-1", "gamma-1"], 10),
    image("B", ["alpha-2", "beta-2"], 9),
    image("C", ["alpha-3", "beta-3", "gamma-2"], 8),
]
ALL_A_REPO = [
    image("A", ["alpha-1"], 4),
    image("B", ["beta-1"], 3),
    image("C", [], 2),
    image("D", ["alpha-2"], 1),
]
# "E, which has the same '1 day ago' age as D, must rank as newer than D": E gets 23 hours.
ALL_B_REPO = [
    image("A", ["alpha-1", "beta-1"], 4),
    image("B", [], 3),
    image("C", ["alpha-2"], 2),
    image("D", ["git hash"], 1),
    image("E", [], 23 / 24),
]


def aws_examples(kind: str) -> list[Any]:
    def tags(*words: str) -> dict[str, Any]:
        return {kind: [f"{w}*" for w in words] if kind == "patterns" else list(words)}

    return [
        pytest.param(
            M_REPO,
            policy(rule(1, **tags("prod")), rule(2, **tags("beta"))),
            {"A"},
            id=f"M-A ({kind}): prod first expires A; B is seen by the prod rule",
        ),
        pytest.param(
            M_REPO,
            policy(rule(1, **tags("beta")), rule(2, **tags("prod"))),
            {"A", "B"},
            id=f"M-B ({kind}): beta first expires A and B; the prod rule sees nothing new",
        ),
        pytest.param(
            T_A_REPO,
            policy(rule(1, count="sinceImagePushed", n=5, **tags("alpha", "beta"))),
            {"C"},
            id=f"T-A ({kind}): entries are ANDed, only C has both and is old",
        ),
        pytest.param(
            T_B_REPO,
            policy(rule(1, **tags("alpha", "beta"))),
            {"A", "B"},
            id=f"T-B ({kind}): extra tags do not hide an image from the rule",
        ),
        pytest.param(
            ALL_A_REPO,
            policy(rule(1)),
            {"A", "B", "C"},
            id=f"ALL-A ({kind}): an any rule keeps only the newest image",
        ),
        pytest.param(
            ALL_B_REPO,
            policy(
                rule(1, **tags("alpha")),
                rule(2, "untagged", "sinceImagePushed", 1),
                rule(3),
            ),
            {"A", "B", "D"},
            id=f"ALL-B ({kind}): the any rule ranks seen images but expires only D",
        ),
    ]


@pytest.mark.parametrize(
    ("images", "pol", "expected"), aws_examples("patterns") + aws_examples("prefixes")
)
def test_aws_worked_example(images: list[Image], pol: LifecyclePolicy, expected: set[str]) -> None:
    assert expired(images, pol) == expected


def test_aws_example_all_b_explains_every_image() -> None:
    pol = policy(
        rule(1, patterns=["alpha*"], description="Rule 1"),
        rule(2, "untagged", "sinceImagePushed", 1, description="Rule 2"),
        rule(3, description="Rule 3"),
    )
    assert reasons(ALL_B_REPO, pol) == {
        "E": 'kept by rule 2 "Rule 2": pushed 23h ago, not older than 1 day',
        "D": 'expired by rule 3 "Rule 3": rank 2 of 5 (keeps 1 newest)',
        "C": 'kept: selected by higher-priority rule 1 "Rule 1"; '
        'rule 3 "Rule 3" would otherwise expire it: rank 3 of 5 (keeps 1 newest)',
        "B": 'expired by rule 2 "Rule 2": pushed 3d ago, older than 1 day',
        "A": 'expired by rule 1 "Rule 1": rank 2 of 2 (keeps 1 newest)',
    }


# --- Edge cases ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("age", "verdict"),
    [
        pytest.param(DAY, Verdict.KEEP, id="pushed exactly 1 day ago is not older than 1 day"),
        pytest.param(DAY + timedelta(microseconds=1), Verdict.EXPIRE, id="1 day and 1us is"),
        pytest.param(DAY - timedelta(seconds=1), Verdict.KEEP, id="a second short of a day"),
        pytest.param(-timedelta(hours=1), Verdict.KEEP, id="pushed in the future is kept"),
    ],
)
def test_since_image_pushed_is_strictly_older_than(age: timedelta, verdict: Verdict) -> None:
    img = Image("sha256:x", (), NOW - age)
    (decision,) = evaluate([img], policy(rule(1, count="sinceImagePushed", n=1)), NOW)
    assert decision.verdict is verdict
    assert decision.rule == 1


def test_an_image_from_the_future_says_so() -> None:
    img = Image("sha256:x", (), NOW + timedelta(minutes=5))
    (decision,) = evaluate([img], policy(rule(1, count="sinceImagePushed", n=1)), NOW)
    assert decision.reason == "kept by rule 1: pushed 5m in the future, not older than 1 day"


def test_reasons_read_as_documented() -> None:
    images = [image(f"i{k}", [], k) for k in (0.5, 1, 2, 3, 4)]
    pol = policy(rule(1, "untagged", n=2))
    assert reasons(images, pol) == {
        "i0.5": "kept by rule 1: rank 1 of 5 (keeps 2 newest)",
        "i1": "kept by rule 1: rank 2 of 5 (keeps 2 newest)",
        "i2": "expired by rule 1: rank 3 of 5 (keeps 2 newest)",
        "i3": "expired by rule 1: rank 4 of 5 (keeps 2 newest)",
        "i4": "expired by rule 1: rank 5 of 5 (keeps 2 newest)",
    }
    aged = policy(rule(2, "untagged", "sinceImagePushed", 1, description="untagged"))
    assert reasons([image("old", [], 3), image("new", [], 0.5)], aged) == {
        "old": 'expired by rule 2 "untagged": pushed 3d ago, older than 1 day',
        "new": 'kept by rule 2 "untagged": pushed 12h ago, not older than 1 day',
    }


def test_equal_push_times_are_ranked_by_digest_whatever_the_input_order() -> None:
    same = NOW - DAY
    images = [Image(f"sha256:{c}", (), same) for c in "dbca"]
    pol = policy(rule(1, n=2))
    for shuffled in (images, images[::-1], sorted(images, key=lambda i: i.digest)):
        decisions = evaluate(shuffled, pol, NOW)
        assert [name(d) for d in decisions] == ["a", "b", "c", "d"]
        assert [d.verdict for d in decisions] == ["keep", "keep", "expire", "expire"]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 40), st.integers(0, 5)),  # (digest, push minute): many ties
        max_size=40,
        unique_by=lambda pair: pair[0],
    )
)
def test_newest_first_equals_the_plain_two_sort_definition(pairs: list[tuple[int, int]]) -> None:
    """newest_first sorts runs of equal push times on their own; it must agree with sorting
    everything by digest and then, stably, by push time."""
    images = [Image(f"sha256:{d:04}", (), NOW - timedelta(minutes=m)) for d, m in pairs]
    by_digest = sorted(images, key=lambda i: i.digest)
    assert newest_first(images) == sorted(by_digest, key=lambda i: i.pushed_at, reverse=True)


def test_ranking_is_by_push_time_not_by_digest() -> None:
    images = [image("a-oldest", [], 3), image("m-middle", [], 2), image("z-newest", [], 1)]
    assert expired(images, policy(rule(1))) == {"a-oldest", "m-middle"}
    assert [d.image.digest for d in evaluate(images, policy(rule(1)), NOW)] == [
        "sha256:z-newest",
        "sha256:m-middle",
        "sha256:a-oldest",
    ]


def test_a_higher_rule_that_keeps_an_image_shields_it_from_a_lower_rule() -> None:
    images = [image("p1", ["prod-1"], 5), image("p2", ["prod-2"], 4), image("dev", ["dev"], 1)]
    pol = policy(rule(1, patterns=["prod*"], n=10), rule(2, n=1))
    assert reasons(images, pol) == {
        "dev": "kept by rule 2: rank 1 of 3 (keeps 1 newest)",
        "p2": "kept: selected by higher-priority rule 1; "
        "rule 2 would otherwise expire it: rank 2 of 3 (keeps 1 newest)",
        "p1": "kept: selected by higher-priority rule 1; "
        "rule 2 would otherwise expire it: rank 3 of 3 (keeps 1 newest)",
    }


def test_rules_apply_by_priority_even_if_the_policy_lists_them_out_of_order() -> None:
    keep_prod = Rule(1, TagStatus.TAGGED, CountType.IMAGE_COUNT_MORE_THAN, 5, tag_prefixes=("p",))
    one = Rule(9, TagStatus.ANY, CountType.IMAGE_COUNT_MORE_THAN, 1)
    images = [image("p", ["p1"], 2), image("q", ["q1"], 1)]
    assert expired(images, LifecyclePolicy((one, keep_prod))) == set()


@pytest.mark.parametrize(
    ("selection", "tags", "selected"),
    [
        pytest.param({"prefixes": ["alpha", "beta"]}, ["alpha-1", "beta-1"], True, id="prefix and"),
        pytest.param({"prefixes": ["alpha", "beta"]}, ["alpha-1"], False, id="one prefix missing"),
        pytest.param({"prefixes": ["al", "alpha"]}, ["alpha-1"], True, id="one tag fits both"),
        pytest.param({"prefixes": ["v1."]}, ["v100"], False, id="a prefix dot is literal"),
        pytest.param({"prefixes": ["prod"]}, ["Prod-1"], False, id="a prefix is case-sensitive"),
        pytest.param({"patterns": ["prod"]}, ["prod-1"], False, id="a pattern matches whole tags"),
        pytest.param({"patterns": ["prod*"]}, ["prod"], True, id="a star matches nothing too"),
        pytest.param({"patterns": ["*prod*"]}, ["repo-production"], True, id="star on both ends"),
        pytest.param({"patterns": ["v*-rc*"]}, ["v1.2-rc3"], True, id="stars in the middle"),
        pytest.param({"patterns": ["v1.0*"]}, ["v100"], False, id="a pattern dot is literal"),
        pytest.param({"patterns": ["Prod*"]}, ["prod-1"], False, id="a pattern is case-sensitive"),
        pytest.param({"patterns": ["*"]}, [], False, id="a tagged rule never selects untagged"),
        pytest.param({"patterns": ["a*", "*z"]}, ["a1", "2z"], True, id="patterns on two tags"),
        pytest.param({"patterns": ["a*", "*z"]}, ["a1", "b2"], False, id="pattern and not met"),
    ],
)
def test_tag_selection(selection: dict[str, Any], tags: list[str], selected: bool) -> None:
    (decision,) = evaluate([image("x", tags, 1)], policy(rule(1, n=10, **selection)), NOW)
    assert (decision.rule == 1) is selected


def test_a_transition_rule_shields_but_never_expires() -> None:
    images = [
        image("stale", ["prod-1"], 200, pulled=100),
        image("never", ["prod-2"], 120),
        image("fresh", ["prod-3"], 150, pulled=2),
        image("dev", ["dev"], 1),
    ]
    pol = policy(
        rule(1, count="sinceImagePulled", n=90, patterns=["prod*"], transition=True),
        rule(2, n=1),
    )
    note = "; ECR would archive it, ecr-cleaner does not archive"
    assert reasons(images, pol) == {
        "dev": "kept by rule 2: rank 1 of 4 (keeps 1 newest)",
        "never": f"kept by rule 1: never pulled, pushed 120d ago, older than 90 days{note}",
        "fresh": "kept: selected by higher-priority rule 1; "
        "rule 2 would otherwise expire it: rank 3 of 4 (keeps 1 newest)",
        "stale": f"kept by rule 1: last pulled 100d ago, older than 90 days{note}",
    }


def test_a_transition_count_rule_keeps_what_ecr_would_archive() -> None:
    images = [image("new", [], 1), image("old", [], 2)]
    pol = policy(rule(1, "untagged", n=1, transition=True))
    assert reasons(images, pol)["old"] == (
        "kept by rule 1: rank 2 of 2 (keeps 1 newest); "
        "ECR would archive it, ecr-cleaner does not archive"
    )


def test_archive_rules_select_no_active_image() -> None:
    images = [image("new", [], 1), image("old", [], 400)]
    pol = policy(
        rule(1, "untagged", "sinceImagePushed", 30),
        rule(2, count="sinceImageTransitioned", n=1),
    )
    assert reasons(images, pol) == {
        "new": "kept by rule 1: pushed 1d ago, not older than 30 days",
        "old": "expired by rule 1: pushed 400d ago, older than 30 days",
    }
    only_archive = policy(rule(1, count="sinceImageTransitioned", n=1))
    assert expired(images, only_archive) == set()
    # Whatever the count type: an archive-class rule acts on archived images only.
    archive_count = Rule(
        1, TagStatus.ANY, CountType.IMAGE_COUNT_MORE_THAN, 1, storage_class="archive"
    )
    assert expired(images, LifecyclePolicy((archive_count,))) == set()


def test_images_no_rule_selects_are_kept_without_a_rule() -> None:
    images = [image("a", ["dev-1"], 30), image("b", [], 40)]
    decisions = evaluate(images, policy(rule(1, patterns=["prod*"])), NOW)
    assert [(d.verdict, d.reason, d.rule) for d in decisions] == [
        (Verdict.KEEP, "kept: no rule selects it", None)
    ] * 2


def test_an_empty_repository_has_no_decisions() -> None:
    assert evaluate([], policy(rule(1)), NOW) == []


def test_now_must_be_timezone_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        evaluate([], policy(rule(1)), datetime(2025, 1, 1))


def test_plan_repository_wraps_evaluate() -> None:
    plan = plan_repository("web/api", ALL_A_REPO, policy(rule(1)), NOW)
    assert plan.repository == "web/api"
    assert [name(d) for d in plan.keep] == ["D"]
    assert [name(d) for d in plan.expire] == ["C", "B", "A"]


@pytest.mark.parametrize(
    ("age", "text"),
    [
        pytest.param(timedelta(seconds=42), "42s", id="seconds"),
        pytest.param(timedelta(minutes=5, seconds=30), "5m30s", id="minutes and seconds"),
        pytest.param(timedelta(hours=2), "2h", id="whole hours"),
        pytest.param(timedelta(days=1, hours=4, minutes=9), "1d4h", id="days and hours"),
        pytest.param(timedelta(days=3, seconds=1), "3d", id="smaller units are dropped"),
    ],
)
def test_ages_in_reasons_are_short(age: timedelta, text: str) -> None:
    (decision,) = evaluate(
        [Image("sha256:x", (), NOW - age)], policy(rule(1, count="sinceImagePushed", n=9)), NOW
    )
    assert decision.reason == f"kept by rule 1: pushed {text} ago, not older than 9 days"


def test_a_large_repository_is_planned_quickly() -> None:
    rng = random.Random(7)
    words = ["prod", "beta", "dev", "feat", "rc"]
    images = [
        Image(
            f"sha256:{i:064x}",
            tuple(f"{rng.choice(words)}-{i}-{j}" for j in range(rng.randint(0, 2))),
            NOW - timedelta(seconds=rng.randint(0, 400 * 86400)),
        )
        for i in range(100_000)
    ]
    pol = policy(
        *(rule(p, patterns=[f"{w}-*"], n=500) for p, w in enumerate(words, start=1)),
        rule(6, prefixes=["prod", "prod-1"], count="sinceImagePushed", n=30),
        rule(7, patterns=["*-1-*"], count="sinceImagePulled", n=30, transition=True),
        rule(8, patterns=["*9*"], n=50),
        rule(9, "untagged", "sinceImagePushed", 7),
        rule(10, n=1000),
    )
    started = time.process_time()
    decisions = evaluate(images, pol, NOW)
    elapsed = time.process_time() - started
    assert len(decisions) == len(images)
    # About 1 s of CPU on a slow 2-core CI box; an O(n^2) step would take minutes.
    assert elapsed < 6, f"evaluate took {elapsed:.2f}s of CPU for 100,000 images"


# --- Properties, and a naive reference written straight from the documented rules ----------


def naive_match(pattern: str, tag: str) -> bool:
    """`*` matches any run of characters, everything else itself; the whole tag must match."""
    if not pattern:
        return not tag
    if pattern[0] == "*":
        return naive_match(pattern[1:], tag) or (bool(tag) and naive_match(pattern, tag[1:]))
    return bool(tag) and tag[0] == pattern[0] and naive_match(pattern[1:], tag[1:])


def naive_selects(r: Rule, img: Image) -> bool:
    if r.storage_class != "standard" or r.count_type is CountType.SINCE_IMAGE_TRANSITIONED:
        return False  # archive rules act on archived images; we list active ones
    if r.tag_status is TagStatus.ANY:
        return True
    if r.tag_status is TagStatus.UNTAGGED:
        return not img.tags
    pattern_hits = [any(naive_match(p, t) for t in img.tags) for p in r.tag_patterns]
    prefix_hits = [any(t.startswith(p) for t in img.tags) for p in r.tag_prefixes]
    return all(pattern_hits + prefix_hits)


def naive_evaluate(images: Sequence[Image], pol: LifecyclePolicy) -> dict[str, tuple[str, Any]]:
    """digest -> (verdict, deciding rule priority), one rule at a time, one image at a time."""
    ranked = sorted(images, key=lambda i: (-i.pushed_at.timestamp(), i.digest))
    result: dict[str, tuple[str, Any]] = {i.digest: ("keep", None) for i in images}
    seen: set[str] = set()
    for r in sorted(pol.rules, key=lambda r: r.priority):
        selected = [i for i in ranked if naive_selects(r, i)]
        for rank, img in enumerate(selected, start=1):
            if img.digest in seen:
                continue  # a higher rule selected it: this rule may not expire it
            if r.count_type is CountType.IMAGE_COUNT_MORE_THAN:
                met = rank > r.count_number
            else:
                met = (NOW - img.pushed_at).total_seconds() > r.count_number * 86400
            expire = met and r.action is ActionType.EXPIRE
            result[img.digest] = ("expire" if expire else "keep", r.priority)
        seen.update(i.digest for i in selected)
    return result


@settings(max_examples=100, deadline=None)
@given(images=repositories(), n=st.integers(1, 15))
def test_property_a_single_any_count_rule_keeps_the_n_newest(images: list[Image], n: int) -> None:
    decisions = evaluate(images, policy(rule(1, n=n)), NOW)
    kept = [d.image for d in decisions if d.verdict is Verdict.KEEP]
    newest = sorted(images, key=lambda i: (-i.pushed_at.timestamp(), i.digest))
    assert kept == newest[: min(n, len(images))]


@settings(max_examples=100, deadline=None)
@given(images=repositories(), pol=policies())
def test_property_b_every_image_gets_exactly_one_explained_decision(
    images: list[Image], pol: LifecyclePolicy
) -> None:
    decisions = evaluate(images, pol, NOW)
    assert sorted(d.image.digest for d in decisions) == sorted(i.digest for i in images)
    assert all(d.reason for d in decisions)
    pushed = [d.image.pushed_at for d in decisions]
    assert pushed == sorted(pushed, reverse=True)
    assert evaluate(images[::-1], pol, NOW) == decisions  # the input order does not matter


@settings(max_examples=100, deadline=None)
@given(images=repositories(), pol=policies())
def test_property_c_only_a_selecting_rule_expires(
    images: list[Image], pol: LifecyclePolicy
) -> None:
    by_priority = {r.priority: r for r in pol.rules}
    for d in evaluate(images, pol, NOW):
        if d.verdict is Verdict.EXPIRE:
            assert d.rule is not None
            assert by_priority[d.rule].action is ActionType.EXPIRE
            assert naive_selects(by_priority[d.rule], d.image)


@settings(max_examples=300, deadline=None)
@given(images=repositories(), pol=policies())
def test_property_d_matches_the_naive_reference(images: list[Image], pol: LifecyclePolicy) -> None:
    actual = {d.image.digest: (str(d.verdict), d.rule) for d in evaluate(images, pol, NOW)}
    assert actual == naive_evaluate(images, pol)
