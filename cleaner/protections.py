"""Keep conditions that win over every lifecycle rule, and the per-repository safety floor.

Pure, like the planner: these only ever turn an "expire" into a "keep", each with its own
reason, so that a plan without protections is exactly ECR's and one with them is never more
destructive.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

import semver

from cleaner.model import Decision, Image, Verdict

SemverScope = Literal["none", "major", "minor"]
SEMVER_SCOPES: tuple[SemverScope, ...] = ("none", "major", "minor")


@dataclass(frozen=True, slots=True)
class SemverKeep:
    keep: int
    """How many of the highest versions to keep."""
    per: SemverScope = "none"
    """Count the highest versions overall, per major, or per major.minor line."""


@dataclass(frozen=True, slots=True)
class Protections:
    tags: tuple[str, ...] = ()
    """Shell globs; an image with any matching tag is kept."""
    tag_regex: tuple[re.Pattern[str], ...] = ()
    """Full-match regexes on tags."""
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


def protect(
    decisions: Sequence[Decision],
    protections: Protections,
    safety: Safety,
    now: datetime,
    held: Mapping[str, str] | None = None,
    top_versions: Mapping[str, str] | None = None,
) -> list[Decision]:
    """Turn protected expiries into keeps, then hold the keep_at_least floor (newest first).

    `held` maps digests to a reason they must stay whatever the file says (in use by a
    cluster); it is checked before every other protection. `top_versions` is `semver_top`
    of these images, for a caller that needs it too (computed here otherwise).
    """
    if top_versions is None:
        top_versions = semver_top((d.image for d in decisions), protections.semver)
    held = held or {}
    guarded = [
        _kept(d, f"protected: {held[d.image.digest]}")
        if d.verdict is Verdict.EXPIRE and d.image.digest in held
        else _guard(d, protections, top_versions, now)
        for d in decisions
    ]
    return _floor(guarded, safety.keep_at_least)


def _guard(
    decision: Decision, protections: Protections, top_versions: Mapping[str, str], now: datetime
) -> Decision:
    if decision.verdict is not Verdict.EXPIRE:
        return decision
    why = protection_reason(decision.image, protections, top_versions, now)
    if why is None:
        return decision
    return _kept(decision, f"protected: {why}")


def protection_reason(
    image: Image, protections: Protections, top_versions: Mapping[str, str], now: datetime
) -> str | None:
    """The first protection that holds for this image, as a reason; None if none does."""
    for tag in image.tags:
        glob = next((g for g in protections.tags if fnmatch.fnmatchcase(tag, g)), None)
        if glob is not None:
            return f"tag {tag}" if glob == tag else f"tag {tag} matches {glob}"
        regex = next((r for r in protections.tag_regex if r.fullmatch(tag)), None)
        if regex is not None:
            return f"tag {tag} matches regex {regex.pattern}"
        if tag in top_versions:
            return f"{top_versions[tag]} ({tag})"
    age = now - image.pushed_at
    if age < protections.newer_than:
        return (
            f"pushed {format_duration(age)} ago (grace {format_duration(protections.newer_than)})"
        )
    pulled = image.last_pulled_at
    window = protections.pulled_within
    if window is not None and pulled is not None and now - pulled < window:
        return f"pulled {format_duration(now - pulled)} ago (within {format_duration(window)})"
    return None


def semver_top(images: Iterable[Image], rule: SemverKeep | None) -> dict[str, str]:
    """Tags holding one of the `keep` highest semver versions, mapped to a reason fragment."""
    if rule is None:
        return {}
    versions: dict[semver.Version, list[str]] = {}
    for image in images:
        for tag in image.tags:
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


def parse_semver(tag: str) -> semver.Version | None:
    """`1.2.3`, `v1.2.3`, `1.2.3-rc.1`, `1.2.3+build`; anything else is not a version."""
    try:
        return semver.Version.parse(tag[1:] if tag.startswith("v") else tag)
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
    result = []
    for decision in decisions:  # newest first
        if missing > 0 and decision.verdict is Verdict.EXPIRE:
            decision = _kept(decision, f"protected: keep_at_least {keep_at_least} (newest images)")
            missing -= 1
        result.append(decision)
    return result


def _kept(decision: Decision, reason: str) -> Decision:
    rule = f", rule {decision.rule} would expire it" if decision.rule is not None else ""
    return replace(decision, verdict=Verdict.KEEP, reason=reason + rule)


_DURATION = re.compile(r"(\d+)([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: object) -> timedelta:
    """`90s`, `15m`, `2h`, `30d`; ValueError otherwise."""
    match = _DURATION.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"not a duration: {text!r} (use e.g. 90s, 15m, 2h, 30d)")
    return timedelta(seconds=int(match[1]) * _UNIT_SECONDS[match[2]])


def format_duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit in ("d", "h", "m"):
        size = _UNIT_SECONDS[unit]
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"
