"""The pure lifecycle evaluator: which images would an ECR lifecycle policy expire, and why.

No clock, no I/O: `now` is an argument. This follows the evaluation rules of "How lifecycle
policies work" (docs.aws.amazon.com/AmazonECR/latest/userguide/LifecyclePolicies.html) and
the worked examples of "Examples of lifecycle policies in Amazon ECR":

- Rules are applied by priority, lowest number first, and "An image is expired or archived by
  exactly one or zero rules."
- "An image that matches the tagging requirements of a rule cannot be expired or archived by a
  rule with a lower priority", whether or not that higher rule expired it. So the first rule
  that selects an image decides it.
- "Rules can never mark images that are marked by higher priority rules, but can still
  identify them": a count rule ranks every image it selects, shielded ones included (AWS
  example ALL-B), and expires only the unshielded ones beyond its count.

Protections (protected tags, grace periods, ...) are a separate later step that may only turn
an expire into a keep; this module stays exactly ECR.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from itertools import compress, count, repeat

from cleaner.planning.graph import ArtifactGraph, build_graph, gc_paused, resolve_ordered
from cleaner.planning.model import (
    ActionType,
    CountType,
    Decision,
    Image,
    LifecyclePolicy,
    Plan,
    Rule,
    TagStatus,
    Verdict,
    newest_first,
)
from cleaner.planning.protections import (
    NO_PROTECTIONS,
    NO_SAFETY,
    Protections,
    Safety,
    Screen,
    protect,
    semver_top,
)
from cleaner.planning.units import format_duration

_DAY = timedelta(days=1)
_ARCHIVE_NOTE = "ECR would archive it, ecr-cleaner does not archive"


def plan_repository(
    repository: str,
    images: Iterable[Image],
    policy: LifecyclePolicy,
    now: datetime,
    protections: Protections = NO_PROTECTIONS,
    safety: Safety = NO_SAFETY,
    *,
    graph: ArtifactGraph | None = None,
    held: Mapping[str, str] | None = None,
) -> Plan:
    """Plan one repository: every image gets a verdict and a reason.

    Only top-level images are ranked and counted by the rules (an index, not its platform
    manifests; an image, not its signatures). Protections, which may only turn expire into
    keep, apply to them next; dependents then follow their parents. Without `graph`, links
    come from what DescribeImages shows (cosign tags, `subjectManifestDigest`).
    """
    images = newest_first(images)
    graph = graph or build_graph(images, {}, {})
    with gc_paused():
        top, dependents = graph.split(images)
        versions = semver_top(top, protections.semver)
        screen = Screen(protections, versions, now, held)
        decided = protect(_evaluate(top, policy, now), screen, safety)
        # Dependents a protection keeps on their own (a tagged `prod` platform manifest, say)
        # are pinned; the rest follow their parents. Semantic versions rank among top-level
        # images only: a platform manifest or a signature is not a release of its own.
        pinned = [
            Decision(image, Verdict.KEEP, f"protected: {why}")
            for image in dependents
            if (why := screen.reason(image)) is not None
        ]
        decisions = resolve_ordered([*decided, *pinned], graph, images)
    return Plan(repository=repository, decisions=tuple(decisions))


def evaluate(images: Iterable[Image], policy: LifecyclePolicy, now: datetime) -> list[Decision]:
    """One Decision per image, newest first, exactly as the ECR lifecycle policy would act.

    `images` are the repository's active (standard storage class) images; `now` must be
    timezone-aware, like `Image.pushed_at`.
    """
    return _evaluate(newest_first(images), policy, now)


def _evaluate(ordered: Sequence[Image], policy: LifecyclePolicy, now: datetime) -> list[Decision]:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    tags = _TagIndex(ordered)
    outcomes: list[_Outcome | None] = [None] * len(ordered)
    shields: list[_Outcome | None] = [None] * len(ordered)
    views: list[_RuleView] = []
    for rule in sorted(policy.rules, key=lambda r: r.priority):
        selected = _select(rule, ordered, tags)
        hits = _hits(rule, selected, ordered, now)
        views.append(_RuleView.of(rule, len(selected)))
        _record(len(views) - 1, rule, selected, hits, outcomes, shields)
    return [
        _decide(image, outcome, shield, views, now)
        for image, outcome, shield in zip(ordered, outcomes, shields, strict=True)
    ]


@dataclass(frozen=True, slots=True)
class _RuleView:
    """A rule as evaluated against this repository, with the parts of its reasons that do
    not change from image to image (made once: a rule may decide 100,000 images)."""

    rule: Rule
    label: str
    total: int
    """How many images the rule selects (its ranking size)."""
    expires: bool
    expired_by: str
    """The head of the reason of an image this rule expires: `expired by rule 2: `."""
    ranked: str
    """The tail of a count rule's detail: ` of 5 (keeps 2 newest)`."""

    @classmethod
    def of(cls, rule: Rule, total: int) -> _RuleView:
        label = rule.label()
        ranked = f" of {total} (keeps {rule.count_number} newest)"
        expires = rule.action is ActionType.EXPIRE
        return cls(rule, label, total, expires, f"expired by {label}: ", ranked)

    def detail(self, outcome: _Outcome, image: Image, now: datetime) -> str:
        """Why the criterion holds or not: `rank 3 of 5 (keeps 2 newest)` or an age."""
        count_type = self.rule.count_type
        if count_type is CountType.IMAGE_COUNT_MORE_THAN:
            return f"rank {outcome[2]}{self.ranked}"
        older = "older" if outcome[1] else "not older"
        days = "1 day" if self.rule.count_number == 1 else f"{self.rule.count_number} days"
        comparison = f"{older} than {days}"
        if count_type is not CountType.SINCE_IMAGE_PULLED:
            return f"{image.age_from} {_age(now - image.pushed_at)}, {comparison}"
        if image.last_pulled_at is None:
            return f"never pulled, {image.age_from} {_age(now - image.pushed_at)}, {comparison}"
        return f"last pulled {_age(now - image.last_pulled_at)}, {comparison}"


_Outcome = tuple[int, bool, int]
"""What one rule found for one image it selects: (rule's index in `views`, criterion holds,
rank). Plain ints on purpose: 100,000s are made per run, and the garbage collector untracks
such tuples on its next pass, so they do not pile up and trigger full collections."""


class _TagIndex:
    """Every tag of every image in one flat list, with the index of the image that owns it.

    A filter entry is then one C-level pass (`map` + `compress`) over all tags instead of a
    Python call per image and entry; built on first use, as only tagged rules need it.
    """

    def __init__(self, ordered: Sequence[Image]) -> None:
        self._ordered = ordered

    @cached_property
    def tags(self) -> list[str]:
        return [tag for image in self._ordered for tag in image.tags]

    @cached_property
    def owners(self) -> list[int]:
        return [i for i, image in enumerate(self._ordered) for _ in image.tags]

    def owners_of(self, hits: Iterable[object]) -> set[int]:
        return set(compress(self.owners, hits))


def _select(rule: Rule, ordered: Sequence[Image], tags: _TagIndex) -> list[int]:
    """Indices (newest first) of the images the rule selects."""
    # Everything we list is ACTIVE (storage class standard). Archive rules select archived
    # images only, and sinceImageTransitioned applies to archived images only.
    active = rule.storage_class == "standard"
    if not active or rule.count_type is CountType.SINCE_IMAGE_TRANSITIONED:
        return []
    if rule.tag_status is TagStatus.ANY:
        return list(range(len(ordered)))
    if rule.tag_status is TagStatus.UNTAGGED:
        return [i for i, image in enumerate(ordered) if not image.tags]
    return _select_tagged(rule, tags)


def _select_tagged(rule: Rule, tags: _TagIndex) -> list[int]:
    """Images that have, for EVERY list entry, at least one tag the entry matches.

    "An image is successfully matched if all of the tags in the tagPatternList or tagPrefixList
    value are matched against any of the image's tags" (AWS example T-A: the entries are
    ANDed). A pattern must match the whole tag, `*` matches any run of characters (also
    none), case-sensitive; a prefix is a plain `startswith`.
    """
    per_entry = [tags.owners_of(map(_pattern(p).fullmatch, tags.tags)) for p in rule.tag_patterns]
    per_entry += [
        tags.owners_of(map(str.startswith, tags.tags, repeat(p))) for p in rule.tag_prefixes
    ]
    if not per_entry:
        return []  # ECR rejects a tagged rule without lists
    return sorted(set.intersection(*per_entry))


def _pattern(pattern: str) -> re.Pattern[str]:
    """A full-match regex for an ECR tag pattern, where `*` is the only wildcard.

    Each middle `*literal` is an atomic lazy group, as `fnmatch.translate` builds them: the
    leftmost place for each literal is always a right one for a `*`-only pattern, so nothing
    backtracks, and a pattern of four wildcards costs time linear in the tag instead of a
    power of it: with plain `.*`, `a*a*a*a*b` took 0.2 s on one 300-character tag, and a
    pushed tag is anyone's choice."""
    if "*" not in pattern:
        return re.compile(re.escape(pattern), re.DOTALL)
    first, *middle, last = pattern.split("*")
    atoms = "".join(f"(?>.*?{re.escape(part)})" for part in middle)
    return re.compile(f"{re.escape(first)}{atoms}.*{re.escape(last)}", re.DOTALL)


def _hits(rule: Rule, selected: list[int], ordered: Sequence[Image], now: datetime) -> list[bool]:
    """Per selected image (in rank order): does the rule's criterion hold?"""
    limit = rule.count_number
    if rule.count_type is CountType.IMAGE_COUNT_MORE_THAN:
        # "images are sorted from youngest to oldest ... all images greater than the
        # specified count are expired"
        kept = min(limit, len(selected))
        return [False] * kept + [True] * (len(selected) - kept)
    cutoff = now - limit * _DAY
    if rule.count_type is CountType.SINCE_IMAGE_PUSHED:
        # "older than the specified number of days": strictly more than N*86400 s.
        return [ordered[i].pushed_at < cutoff for i in selected]
    if rule.count_type is CountType.SINCE_IMAGE_PULLED:
        # "If an image was never pulled, the image's pushed_at_time is used instead"
        return [_last_used(ordered[i]) < cutoff for i in selected]
    return [False] * len(selected)  # sinceImageTransitioned: archived images only


def _last_used(image: Image) -> datetime:
    return image.last_pulled_at or image.pushed_at


def _record(
    view: int,
    rule: Rule,
    selected: list[int],
    hits: list[bool],
    outcomes: list[_Outcome | None],
    shields: list[_Outcome | None],
) -> None:
    """The first rule that selects an image decides it; later ones may only explain the keep."""
    expires = rule.action is ActionType.EXPIRE
    for rank, index, hit in zip(count(1), selected, hits):
        if outcomes[index] is None:
            outcomes[index] = (view, hit, rank)
        elif hit and expires and shields[index] is None:
            # Remembered only for the reason: "rule 3 would otherwise expire it".
            shields[index] = (view, hit, rank)


def _decide(
    image: Image,
    outcome: _Outcome | None,
    shield: _Outcome | None,
    views: list[_RuleView],
    now: datetime,
) -> Decision:
    if outcome is None:
        return Decision(image, Verdict.KEEP, "kept: no rule selects it")
    view = views[outcome[0]]
    if outcome[1] and view.expires:  # the common case, made short: most images go this way
        reason = view.expired_by + view.detail(outcome, image, now)
        return Decision(image, Verdict.EXPIRE, reason, view.rule.priority)
    return Decision(
        image, Verdict.KEEP, _kept_reason(image, outcome, shield, views, now), view.rule.priority
    )


def _kept_reason(
    image: Image, outcome: _Outcome, shield: _Outcome | None, views: list[_RuleView], now: datetime
) -> str:
    view = views[outcome[0]]
    if shield is not None and not outcome[1]:
        lower = views[shield[0]]
        would = f"{lower.label} would otherwise expire it: {lower.detail(shield, image, now)}"
        return f"kept: selected by higher-priority {view.label}; {would}"
    detail = view.detail(outcome, image, now)
    if outcome[1]:
        return f"kept by {view.label}: {detail}; {_ARCHIVE_NOTE}"
    return f"kept by {view.label}: {detail}"


def _age(delta: timedelta) -> str:
    """`3d ago`, `1d4h ago`, `5m30s ago`, or `2h in the future`."""
    if delta < timedelta(0):
        return f"{format_duration(-delta)} in the future"
    return f"{format_duration(delta)} ago"
