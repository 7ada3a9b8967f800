"""A deliberately simple reference evaluator, written from the README and the AWS pages alone.

It shares nothing with `cleaner/` but the data classes (`Image`, `Rule`, `Protections`,
`Safety`) and the policy parser that builds them. Everything is plain loops over small lists;
speed does not matter, readability does. `tests/test_differential.py` checks the real
planner, engine and emulator against it.

The steps, each from the documents:

1. Links (README "multi-arch"; the OCI image spec's index and `subject`): an index is the
   parent of every manifest it lists (attestations included); an OCI referrer is a dependent
   of its `subject`; an image whose tags are ALL cosign tags (`sha256-<hex>.sig|.att|.sbom`,
   64 hex digits) is a dependent of the digest(s) its tags name. Only parents present
   in the repository count. A referrer or cosign artifact with no present parent is an orphan
   artifact; an index child whose indexes are gone is an ordinary image.
2. ECR lifecycle rules rank and decide the top-level images only (no parent, not an orphan),
   exactly as the ECR documentation describes (README "Which images go first").
3. Protections (tags glob, tag_regex full match, semver top N, newer_than, pulled_within)
   turn an expiry into a keep for ANY image; then keep_at_least keeps the newest expired
   top-level images until that many top-level images stay. Semantic versions are ranked
   among the top-level images only: "a platform manifest is not a release of its own"
   (the maintainers' reading of "the images that hold the N highest semantic versions");
   a tag names one image, so only top-level images are kept by it.
4. A dependent is kept if it is protected itself or any of its parents is kept, and expired
   when every parent is expired. An orphan artifact is expired unless protected.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

import semver

from cleaner.planning.model import Image, LifecyclePolicy, Rule
from cleaner.planning.protections import Protections, Safety

KEEP, EXPIRE = "keep", "expire"
INDEX_TYPES = (
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.index.v1+json",
)
COSIGN_TAG = re.compile(r"sha256-([0-9a-f]{64})\.(sig|att|sbom)")


# --- 1. links ------------------------------------------------------------------------------


def find_parents(
    images: Sequence[Image], manifests: Mapping[str, str]
) -> tuple[dict[str, set[str]], set[str]]:
    """(digest -> present parents, orphan artifacts)."""
    present = {image.digest for image in images}
    parents: dict[str, set[str]] = {image.digest: set() for image in images}
    artifact_of_gone: set[str] = set()
    for image in images:
        doc = json.loads(manifests[image.digest])
        if doc.get("mediaType") in INDEX_TYPES:
            for entry in doc.get("manifests", []):
                child = entry["digest"]
                if child in present and child != image.digest:
                    parents[child].add(image.digest)
        claimed: list[str] = []
        subject = doc.get("subject")
        if isinstance(subject, dict):
            claimed.append(subject["digest"])
        cosign = [COSIGN_TAG.fullmatch(tag) for tag in image.tags]
        if image.tags and all(cosign):
            claimed += ["sha256:" + match[1] for match in cosign if match]
        for parent in claimed:
            if parent == image.digest:
                continue
            if parent in present:
                parents[image.digest].add(parent)
            else:
                artifact_of_gone.add(image.digest)
    orphans = {digest for digest in artifact_of_gone if not parents[digest]}
    return parents, orphans


# --- 2. ECR lifecycle rules ----------------------------------------------------------------


def wildcard_match(pattern: str, tag: str) -> bool:
    """ECR tagPatternList: `*` is any run of characters, all else literal, whole tag."""
    regex = ".*".join(re.escape(part) for part in pattern.split("*"))
    return re.fullmatch(regex, tag, re.DOTALL) is not None


def rule_selects(rule: Rule, image: Image) -> bool:
    if rule.storage_class != "standard" or rule.count_type == "sinceImageTransitioned":
        return False  # archive rules act on archived images; the registry lists active ones
    if rule.tag_status == "any":
        return True
    if rule.tag_status == "untagged":
        return not image.tags
    for pattern in rule.tag_patterns:
        if not any(wildcard_match(pattern, tag) for tag in image.tags):
            return False
    for prefix in rule.tag_prefixes:
        if not any(tag.startswith(prefix) for tag in image.tags):
            return False
    return bool(rule.tag_patterns or rule.tag_prefixes)


def newest_first(images: Sequence[Image]) -> list[Image]:
    """Youngest push first; equal push times by digest (README: only for determinism)."""
    return sorted(images, key=lambda i: (-i.pushed_at.timestamp(), i.digest))


def ecr_verdicts(images: Sequence[Image], policy: LifecyclePolicy, now: datetime) -> dict[str, str]:
    """digest -> keep/expire under the ECR rules alone."""
    ranked = newest_first(images)
    verdict = {image.digest: KEEP for image in images}
    seen: set[str] = set()
    for rule in sorted(policy.rules, key=lambda r: r.priority):
        selected = [image for image in ranked if rule_selects(rule, image)]
        for rank, image in enumerate(selected, start=1):
            if image.digest in seen:
                continue  # a higher-priority rule selected it first: only that rule decides
            if rule.count_type == "imageCountMoreThan":
                met = rank > rule.count_number
            elif rule.count_type == "sinceImagePulled":
                last = image.last_pulled_at or image.pushed_at
                met = now - last > timedelta(days=rule.count_number)
            else:  # sinceImagePushed: strictly older than N days
                met = now - image.pushed_at > timedelta(days=rule.count_number)
            if met and rule.action == "expire":
                verdict[image.digest] = EXPIRE
        for image in selected:
            seen.add(image.digest)
    return verdict


# --- 3. protections ------------------------------------------------------------------------


def as_version(tag: str) -> semver.Version | None:
    text = tag[1:] if tag.startswith("v") else tag
    try:
        return semver.Version.parse(text)
    except ValueError:
        return None


def semver_kept_tags(top: Sequence[Image], protections: Protections) -> set[str]:
    """Tags holding one of the N highest versions (per major/minor line) of the releases:
    the top-level images."""
    rule = protections.semver
    if rule is None:
        return set()
    lines: dict[tuple[int, ...], list[semver.Version]] = {}
    for image in top:
        for tag in image.tags:
            version = as_version(tag)
            if version is None:
                continue
            if rule.per == "major":
                line: tuple[int, ...] = (version.major,)
            elif rule.per == "minor":
                line = (version.major, version.minor)
            else:
                line = ()
            if version not in lines.setdefault(line, []):
                lines[line].append(version)
    kept_versions = []
    for versions in lines.values():
        kept_versions += sorted(versions, reverse=True)[: rule.keep]
    kept = set()
    for image in top:
        for tag in image.tags:
            version = as_version(tag)
            if version is not None and version in kept_versions:
                kept.add(tag)
    return kept


def is_protected(
    image: Image, protections: Protections, semver_tags: set[str], now: datetime
) -> bool:
    for tag in image.tags:
        if any(fnmatch.fnmatchcase(tag, glob) for glob in protections.tags):
            return True
        if any(regex.fullmatch(tag) for regex in protections.tag_regex):
            return True
        if tag in semver_tags:
            return True
    if now - image.pushed_at < protections.newer_than:
        return True
    window = protections.pulled_within
    pulled = image.last_pulled_at
    return window is not None and pulled is not None and now - pulled < window


# --- 4. everything together ----------------------------------------------------------------


def reference_plan(
    images: Sequence[Image],
    manifests: Mapping[str, str],
    policy: LifecyclePolicy,
    protections: Protections,
    safety: Safety,
    now: datetime,
) -> dict[str, str]:
    """digest -> "keep" or "expire" for every image of one repository."""
    parents, orphans = find_parents(images, manifests)
    by_digest = {image.digest: image for image in images}
    top = [image for image in images if not parents[image.digest] and image.digest not in orphans]
    semver_tags = semver_kept_tags(top, protections)

    def protected(image: Image) -> bool:
        return is_protected(image, protections, semver_tags, now)

    verdict = ecr_verdicts(top, policy, now)
    for image in top:
        if verdict[image.digest] == EXPIRE and protected(image):
            verdict[image.digest] = KEEP
    missing = safety.keep_at_least - sum(verdict[image.digest] == KEEP for image in top)
    for image in newest_first(top):
        if missing > 0 and verdict[image.digest] == EXPIRE:
            verdict[image.digest] = KEEP
            missing -= 1

    def decide(digest: str, path: tuple[str, ...]) -> str:
        if digest in verdict:
            return verdict[digest]
        if digest in path:
            raise AssertionError(f"a cycle of links: {path}")  # the generators make none
        if protected(by_digest[digest]):
            answer = KEEP
        elif digest in orphans:
            answer = EXPIRE
        else:
            answer = EXPIRE
            for parent in parents[digest]:
                if decide(parent, (*path, digest)) == KEEP:
                    answer = KEEP
        verdict[digest] = answer
        return answer

    for image in images:
        decide(image.digest, ())
    return verdict


def reference_remaining(
    images: Sequence[Image], verdict: Mapping[str, str], safety: Safety
) -> set[str]:
    """What a sweep leaves: the kept images, or everything when max_deletions is exceeded."""
    expired = [image for image in images if verdict[image.digest] == EXPIRE]
    if safety.max_deletions is not None and len(expired) > safety.max_deletions:
        return {image.digest for image in images}
    return {image.digest for image in images if verdict[image.digest] == KEEP}
