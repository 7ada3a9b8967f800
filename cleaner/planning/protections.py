"""Keep conditions that win over every lifecycle rule, and the per-repository safety floor.

Pure, like the planner: these only ever turn an "expire" into a "keep", each with its own
reason, so that a plan without protections is exactly ECR's and one with them is never more
destructive.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Literal, Protocol

import re2
import semver

from cleaner.planning.model import Decision, Image, Verdict
from cleaner.planning.units import format_duration

_short = partial(format_duration, units=1)

SemverScope = Literal["none", "major", "minor"]
SEMVER_SCOPES: tuple[SemverScope, ...] = ("none", "major", "minor")


@dataclass(frozen=True, slots=True)
class SemverKeep:
    keep: int
    """How many of the highest versions to keep."""
    per: SemverScope = "none"
    """Count the highest versions overall, per major, or per major.minor line."""


class TagRegex(Protocol):
    """A compiled regex: Python's `re` or RE2's, which share these two members."""

    @property
    def pattern(self) -> str: ...

    def fullmatch(self, text: str) -> object | None: ...


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # RE2 would print its own copy of the error on stderr


def compile_tag_regex(pattern: str) -> TagRegex:
    """RE2, not `re`: anyone who can push a tag chooses the text a protection regex runs
    on, and RE2 matches in time linear in the tag, where a backtracking pattern such as
    `(a|aa)+b` takes seconds in `re`. RE2 has no backreferences and no lookaround; such a
    pattern is refused (ValueError) rather than run slowly."""
    try:
        return re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as error:
        why = error.args[0] if error.args else error
        raise ValueError(why.decode() if isinstance(why, bytes) else str(why)) from None


@dataclass(frozen=True, slots=True)
class Protections:
    tags: tuple[str, ...] = ()
    """Shell globs; an image with any matching tag is kept."""
    tag_regex: tuple[TagRegex, ...] = ()
    """Full-match regexes on tags (RE2 from a policy file: see `compile_tag_regex`)."""
    semver: SemverKeep | None = None
    newer_than: timedelta = timedelta(hours=1)
    """Grace period: an image pushed less than this long ago is kept (default 1h)."""
    pulled_within: timedelta | None = None
    """Kept if ECR recorded a pull within this window (off by default)."""


@dataclass(frozen=True, slots=True)
class Safety:
    keep_at_least: int = 1
    """Never leave fewer images than this in a repository (default 1)."""
    max_deletions: int | None = None
    """More planned deletions than this fails the repository and deletes nothing."""


NO_PROTECTIONS = Protections(newer_than=timedelta(0))
NO_SAFETY = Safety(keep_at_least=0)


def protect(decisions: Sequence[Decision], screen: Screen, safety: Safety) -> list[Decision]:
    """Turn protected expiries into keeps, then hold the keep_at_least floor (newest first)."""
    guarded = [
        decision
        if decision.verdict is not Verdict.EXPIRE or (why := screen.reason(decision.image)) is None
        else _kept(decision, f"protected: {why}")
        for decision in decisions
    ]
    return _floor(guarded, safety.keep_at_least)


class Screen:
    """The protections of one plan, with what can be worked out once: the grace and pull
    cutoffs, and one regex for all tag globs. `reason` runs for every image a rule expires
    and every dependent, 100,000 times in a large repository."""

    def __init__(
        self,
        protections: Protections,
        top_versions: Mapping[str, str],
        now: datetime,
        held: Mapping[str, str] | None = None,
    ) -> None:
        self.protections, self.top_versions, self.now = protections, top_versions, now
        self.held = held or {}
        self.any_glob = _any_glob(protections.tags)
        self.grace_cutoff = now - protections.newer_than
        window = protections.pulled_within
        self.pulled_cutoff = now - window if window is not None else None

    def reason(self, image: Image) -> str | None:
        """Why `image` must stay, or None. `held` (digest -> why, e.g. in use by a cluster)
        wins over everything the file says; then the protections in order."""
        held = self.held.get(image.digest)
        if held is not None:
            return held
        for tag in image.tags:
            why = self._tag_reason(tag)
            if why is not None:
                return why
        if image.pushed_at > self.grace_cutoff:
            age, grace = self.now - image.pushed_at, self.protections.newer_than
            age = max(age, timedelta(0))  # a clock ahead of ours
            return f"{image.age_from} {_short(age)} ago (grace {_short(grace)})"
        pulled = image.last_pulled_at
        if self.pulled_cutoff is not None and pulled is not None and pulled > self.pulled_cutoff:
            window = _short(self.now - self.pulled_cutoff)
            return f"pulled {_short(self.now - pulled)} ago (within {window})"
        return None

    def _tag_reason(self, tag: str) -> str | None:
        if self.any_glob is not None and self.any_glob.match(tag):
            glob = next(g for g in self.protections.tags if fnmatch.fnmatchcase(tag, g))
            return f"tag {tag}" if glob == tag else f"tag {tag} matches {glob}"
        for regex in self.protections.tag_regex:
            if regex.fullmatch(tag):
                return f"tag {tag} matches regex {regex.pattern}"
        if tag in self.top_versions:
            return f"{self.top_versions[tag]} ({tag})"
        return None


def _any_glob(globs: Sequence[str]) -> re.Pattern[str] | None:
    """One regex matching a tag that any glob matches (`fnmatch.translate` anchors each)."""
    if not globs:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(glob)})" for glob in globs))


def semver_top(images: Iterable[Image], rule: SemverKeep | None) -> dict[str, str]:
    """Tags holding one of the `keep` highest semver versions, mapped to a reason fragment."""
    if rule is None:
        return {}
    versions: dict[semver.Version, list[str]] = {}
    tags = [tag for image in images for tag in image.tags]
    for tag in filter(_VERSION_START.match, tags):  # a cheap screen: most tags are not versions
        version = parse_semver(tag)
        if version is not None:
            versions.setdefault(version, []).append(tag)
    groups: dict[tuple[int, ...], list[semver.Version]] = {}
    for version in versions:
        groups.setdefault(_scope_key(version, rule.per), []).append(version)
    top: dict[str, str] = {}
    for key, members in groups.items():
        scope = "" if not key else " of " + ".".join(map(str, key)) + ".x"
        for version in sorted(members, reverse=True)[: rule.keep]:
            for tag in versions[version]:
                top[tag] = f"semver top {rule.keep}{scope}"
    return top


_VERSION_START = re.compile(r"v?\d")


def parse_semver(tag: str) -> semver.Version | None:
    """`1.2.3`, `v1.2.3`, `1.2.3-rc.1`, `1.2.3+build`; anything else is not a version."""
    text = tag[1:] if tag.startswith("v") else tag
    if not text[:1].isdigit():
        return None  # cheap exit: a failed parse raises, and most tags are not versions
    try:
        return semver.Version.parse(text)
    except ValueError:
        return None


def _scope_key(version: semver.Version, per: SemverScope) -> tuple[int, ...]:
    if per == "major":
        return (version.major,)
    if per == "minor":
        return (version.major, version.minor)
    return ()


def _floor(decisions: list[Decision], keep_at_least: int) -> list[Decision]:
    """Keep the newest expired images until at least `keep_at_least` images stay."""
    missing = keep_at_least - sum(d.verdict is Verdict.KEEP for d in decisions)
    if missing <= 0:
        return decisions
    result = []
    for decision in decisions:  # newest first
        if missing > 0 and decision.verdict is Verdict.EXPIRE:
            decision = _kept(decision, f"protected: keep_at_least {keep_at_least} (newest images)")
            missing -= 1
        result.append(decision)
    return result


def _kept(decision: Decision, reason: str) -> Decision:
    rule = f", rule {decision.rule} would expire it" if decision.rule is not None else ""
    return decision._replace(verdict=Verdict.KEEP, reason=reason + rule)
