"""Builders for planner tests: images by age, lifecycle rules by shorthand, random policies."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

from cleaner.planning.lifecycle import parse_policy
from cleaner.planning.model import Image, LifecyclePolicy

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)


def image(
    name: str, tags: Iterable[str] = (), days: float = 0, pulled: float | None = None
) -> Image:
    """An image pushed `days` ago (and last pulled `pulled` days ago, if given)."""
    return Image(
        digest=f"sha256:{name}",
        tags=tuple(tags),
        pushed_at=NOW - timedelta(days=days),
        last_pulled_at=None if pulled is None else NOW - timedelta(days=pulled),
    )


def rule(
    priority: int, status: str = "any", count: str = "imageCountMoreThan", n: int = 1, **kw: Any
) -> Any:
    """A lifecycle rule document; `patterns`/`prefixes` make it tagged, `transition` archives."""
    selection: dict[str, Any] = {"tagStatus": status, "countType": count, "countNumber": n}
    if "patterns" in kw:
        selection |= {"tagStatus": "tagged", "tagPatternList": kw["patterns"]}
    if "prefixes" in kw:
        selection |= {"tagStatus": "tagged", "tagPrefixList": kw["prefixes"]}
    if count != "imageCountMoreThan":
        selection["countUnit"] = "days"
    if count == "sinceImageTransitioned":
        selection["storageClass"] = "archive"
    action = (
        {"type": "transition", "targetStorageClass": "archive"}
        if kw.get("transition")
        else {"type": "expire"}
    )
    doc = {"rulePriority": priority, "selection": selection, "action": action}
    return doc | ({"description": kw["description"]} if "description" in kw else {})


def policy(*rules: Any) -> LifecyclePolicy:
    return parse_policy({"rules": list(rules)})


TAG_POOL = ["prod", "prod-1", "prod-2", "beta-1", "alpha-1", "v1.0", "v1.0-rc", "Prod-3", "x"]
PATTERN_POOL = ["prod*", "*-1", "*1*", "beta*", "v*-rc", "prod", "*", "alpha-1", "P*", "*o*1"]
PREFIX_POOL = ["prod", "v1", "b", "alpha-", "x", "Prod"]


@st.composite
def repositories(draw: st.DrawFn) -> list[Image]:
    count = draw(st.integers(0, 12))
    return [
        Image(
            digest=f"sha256:{i:02d}",
            tags=tuple(draw(st.lists(st.sampled_from(TAG_POOL), max_size=3, unique=True))),
            # Whole hours over six days: ties and exact day boundaries both happen.
            pushed_at=NOW - timedelta(hours=draw(st.integers(0, 144))),
            last_pulled_at=draw(st.none() | st.integers(0, 144).map(lambda h: NOW - h * HOUR)),
        )
        for i in range(count)
    ]


@st.composite
def counts(draw: st.DrawFn) -> dict[str, Any]:
    kinds = ["imageCountMoreThan", "sinceImagePushed", "sinceImagePulled"]
    count = draw(st.sampled_from(kinds))
    transition = count == "sinceImagePulled" or draw(st.booleans())
    return {"count": count, "n": draw(st.integers(1, 5)), "transition": transition}


@st.composite
def policies(draw: st.DrawFn) -> LifecyclePolicy:
    filters = st.one_of(
        st.lists(st.sampled_from(PATTERN_POOL), min_size=1, max_size=2, unique=True).map(
            lambda p: ("patterns", frozenset(p))
        ),
        st.lists(st.sampled_from(PREFIX_POOL), min_size=1, max_size=2, unique=True).map(
            lambda p: ("prefixes", frozenset(p))
        ),
    )
    tag_sets = draw(st.lists(filters, max_size=4, unique=True))  # "a unique set of prefixes"
    specs = [{kind: sorted(entries)} | draw(counts()) for kind, entries in tag_sets]
    if draw(st.booleans()):
        specs.append({"status": "untagged"} | draw(counts()))
    if draw(st.booleans()):
        specs.append({"count": "sinceImageTransitioned", "n": 1})
    order = draw(st.permutations(range(len(specs))))
    distinct = st.lists(st.integers(1, 40), min_size=len(specs), max_size=len(specs), unique=True)
    priorities = sorted(draw(distinct))
    docs = [rule(priorities[k], **specs[i]) for k, i in enumerate(order)]
    if draw(st.booleans()) or not docs:  # the any rule comes last
        docs.append(rule(41, **draw(counts())))
    return parse_policy({"rules": docs})
