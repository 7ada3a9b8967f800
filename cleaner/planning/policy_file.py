"""The policy file: which rules apply to which repository, what is always kept, safety limits.

Parsing happens here, once, at the edge (CLI, receiver, manual trigger all call
`load_policy_file`); everything after works on frozen, validated data. A bare ECR lifecycle
document (`{"rules": [...]}`) is a complete policy file that applies to every repository.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from cleaner.errors import PolicyError
from cleaner.planning.checks import MAX_COUNT, choices, fail, mapping, positive_int, show
from cleaner.planning.documents import decode, read_text
from cleaner.planning.lifecycle import parse_policy
from cleaner.planning.model import LifecyclePolicy
from cleaner.planning.protections import (
    SEMVER_SCOPES,
    Protections,
    Safety,
    SemverKeep,
    TagRegex,
    compile_tag_regex,
)
from cleaner.planning.sources import SOURCE_SECTIONS, AwsSources, parse_sources
from cleaner.planning.targets import TargetEntry, parse_targets
from cleaner.planning.units import parse_duration

USE_ECR_POLICY = "ecr"
_TOP_KEYS = (
    "repositories", "targets", "protect", "safety", "kubernetes", "coordination", *SOURCE_SECTIONS,
)  # fmt: skip
_ENTRY_KEYS = ("match", "rules")
_PROTECT_KEYS = ("tags", "tag_regex", "semver", "newer_than", "pulled_within", "in_use")
_IN_USE_MODES = {"auto": "auto", True: "on", False: "off"}
_SAFETY_KEYS = ("keep_at_least", "max_deletions")
# Characters a glob on ECR repository names can sensibly hold: the name alphabet plus glob syntax.
_GLOB_CHARS = re.compile(r"[a-z0-9._/\-*?\[\]!]+")


@dataclass(frozen=True, slots=True)
class RepositoryEntry:
    """One `repositories:` entry: the globs it matches and the rules it applies."""

    match: tuple[str, ...]
    lifecycle: LifecyclePolicy | None
    """None means `rules: ecr`: use the repository's own ECR lifecycle policy."""

    def matches(self, repository: str) -> bool:
        return any(fnmatch.fnmatchcase(repository, pattern) for pattern in self.match)


@dataclass(frozen=True, slots=True)
class KubernetesSection:
    """`kubernetes:`: the clusters whose workloads the Kubernetes in-use source reads."""

    contexts: tuple[str, ...] = ()
    """Kubeconfig contexts of the clusters that share this registry; () = the default one."""
    kubeconfig: str | None = None


@dataclass(frozen=True, slots=True)
class CoordinationSection:
    """`coordination:`: the per-repository Leases that keep two prunes apart."""

    namespace: str | None = None
    """Namespace of the Leases; None = the pod's own namespace in a cluster, no coordination
    outside one."""
    lease_seconds: int = 60


@dataclass(frozen=True, slots=True)
class PolicyFile:
    entries: tuple[RepositoryEntry, ...]
    protect: Protections = field(default_factory=Protections)
    safety: Safety = field(default_factory=Safety)
    in_use: str = "auto"
    """`protect.in_use`: "auto" (Kubernetes on whenever a cluster config is available),
    "on" or "off" (every in-use source off)."""
    kubernetes: KubernetesSection = field(default_factory=KubernetesSection)
    coordination: CoordinationSection = field(default_factory=CoordinationSection)
    aws: AwsSources = field(default_factory=AwsSources)
    """The in-use sources beyond Kubernetes (`ecs:`, `lambda:`, ...)."""
    targets: tuple[TargetEntry[RepositoryEntry], ...] = ()
    """`targets:` (`cleaner.planning.targets`); () = the AWS chain's own account."""
    source: str = "policy"

    def entry_for(self, repository: str) -> RepositoryEntry | None:
        """The first entry whose globs match; None means: leave the repository alone."""
        return next((e for e in self.entries if e.matches(repository)), None)


def load_policy_file(path: str | Path) -> PolicyFile:
    """Read and validate a policy file (YAML or JSON); PolicyError names what is wrong."""
    source = str(path)
    return parse_policy_file(decode(read_text(source, source), source), source)


def parse_policy_file(doc: object, source: str = "policy") -> PolicyFile:
    if not isinstance(doc, dict):
        fail(source, f"expected a mapping with 'repositories' or 'rules', got {show(doc)}")
    if "rules" in doc:  # a bare ECR lifecycle document: one entry for every repository
        if set(doc) - {"rules"}:
            extra = sorted(set(doc) - {"rules"})[0]
            fail(source, f'a bare ECR lifecycle document has only "rules"; found "{extra}"')
        return PolicyFile(
            (RepositoryEntry(("*",), parse_policy(doc, where=source)),), source=source
        )
    top = mapping(doc, source, "the policy file", _TOP_KEYS, required=())
    targets = (
        parse_targets(top["targets"], f"{source}: targets", _entries) if "targets" in top else ()
    )
    if "repositories" not in top and not (targets and all(t.entries for t in targets)):
        fail(source, 'the policy file is missing required key "repositories"')
    protect = top.get("protect", {})
    return PolicyFile(
        entries=_entries(top["repositories"], source) if "repositories" in top else (),
        protect=parse_protect(protect, f"{source}: protect"),
        safety=parse_safety(top.get("safety", {}), f"{source}: safety"),
        in_use=_in_use_mode(protect, source),
        kubernetes=parse_kubernetes(top.get("kubernetes", {}), f"{source}: kubernetes"),
        coordination=parse_coordination(top.get("coordination", {}), f"{source}: coordination"),
        aws=parse_sources(top, source),
        targets=targets,
        source=source,
    )


def _in_use_mode(protect: object, source: str) -> str:
    mode = protect.get("in_use", "auto") if isinstance(protect, dict) else "auto"
    if not (isinstance(mode, bool) or mode == "auto"):
        fail(f"{source}: protect", f'in_use must be "auto", true or false, got {show(mode)}')
    return _IN_USE_MODES[mode]


def parse_kubernetes(raw: object, loc: str) -> KubernetesSection:
    kube = mapping(raw, loc, "kubernetes", ("contexts", "kubeconfig"), required=())
    kubeconfig = kube.get("kubeconfig")
    if kubeconfig is not None and not isinstance(kubeconfig, str):
        fail(loc, f"kubeconfig must be a path, got {show(kubeconfig)}")
    contexts = _strings(kube.get("contexts", []), loc, "contexts")
    return KubernetesSection(contexts=contexts, kubeconfig=kubeconfig)


def parse_coordination(raw: object, loc: str) -> CoordinationSection:
    coordination = mapping(raw, loc, "coordination", ("namespace", "lease_seconds"), required=())
    namespace = coordination.get("namespace")
    if namespace is not None and not (isinstance(namespace, str) and namespace):
        fail(loc, f"namespace must be a name, got {show(namespace)}")
    # A day at most: a Lease that outlives a crashed holder by longer blocks every prune.
    seconds = positive_int(coordination.get("lease_seconds", 60), loc, "lease_seconds", 86_400)
    return CoordinationSection(namespace=namespace, lease_seconds=seconds)


def _entries(raw: object, loc: str) -> tuple[RepositoryEntry, ...]:
    if not isinstance(raw, list) or not raw:
        fail(loc, f"repositories must be a non-empty list of entries, got {show(raw)}")
    where = loc if loc.endswith(": repositories") else f"{loc}: repositories"
    return tuple(_entry(item, f"{where}[{i}]") for i, item in enumerate(raw))


def _entry(raw: object, loc: str) -> RepositoryEntry:
    obj = mapping(raw, loc, "the entry", _ENTRY_KEYS, required=_ENTRY_KEYS)
    globs = _globs(obj["match"], loc)
    loc = f"{loc} (match {show(list(globs) if len(globs) > 1 else globs[0])})"
    rules = obj["rules"]
    if rules == USE_ECR_POLICY:
        return RepositoryEntry(globs, None)
    if not isinstance(rules, list):
        fail(loc, f'rules must be a list of ECR lifecycle rules or "ecr", got {show(rules)}')
    return RepositoryEntry(globs, parse_policy({"rules": rules}, where=loc))


def _globs(raw: object, loc: str) -> tuple[str, ...]:
    values = [raw] if isinstance(raw, str) else raw
    if not isinstance(values, list) or not values:
        fail(loc, f"match must be a glob or a non-empty list of globs, got {show(raw)}")
    for glob in values:
        if not isinstance(glob, str) or not glob:
            fail(loc, f"match globs must be non-empty strings, got {show(glob)}")
        if not _GLOB_CHARS.fullmatch(glob):
            fail(loc, f"match glob {show(glob)} can never match: repository names are "
                 "lowercase letters, digits, '.', '_', '-' and '/'")  # fmt: skip
        if glob.count("[") != glob.count("]"):
            fail(loc, f"match glob {show(glob)} has an unclosed [")
    return tuple(values)


def parse_protect(raw: object, loc: str) -> Protections:
    obj = mapping(raw, loc, "protect", _PROTECT_KEYS, required=())
    return Protections(
        tags=_strings(obj.get("tags", []), loc, "tags"),
        tag_regex=tuple(
            _regex(r, loc) for r in _strings(obj.get("tag_regex", []), loc, "tag_regex")
        ),
        semver=_semver(obj["semver"], f"{loc}.semver") if "semver" in obj else None,
        newer_than=_or_default(_duration(obj, "newer_than", loc), Protections().newer_than),
        pulled_within=_duration(obj, "pulled_within", loc),
    )


def parse_safety(raw: object, loc: str) -> Safety:
    obj = mapping(raw, loc, "safety", _SAFETY_KEYS, required=())
    keep = obj.get("keep_at_least", Safety().keep_at_least)
    if isinstance(keep, bool) or not isinstance(keep, int) or not 0 <= keep <= MAX_COUNT:
        fail(
            loc,
            f"keep_at_least must be a whole number >= 0 (at most {MAX_COUNT}), got {show(keep)}",
        )
    limit = obj.get("max_deletions")
    return Safety(
        keep_at_least=keep,
        max_deletions=None if limit is None else positive_int(limit, loc, "max_deletions"),
    )


def _strings(raw: object, loc: str, name: str) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(v, str) and v for v in raw):
        fail(loc, f"{name} must be a list of non-empty strings, got {show(raw)}")
    return tuple(raw)


def _regex(pattern: str, loc: str) -> TagRegex:
    try:
        return compile_tag_regex(pattern)
    except ValueError as error:
        raise PolicyError(
            f"{loc}: tag_regex {show(pattern)} is not a valid regex for RE2 (linear-time "
            f"matching, so no backreferences or lookaround): {str(error)[:80]}"
        ) from None


def _semver(raw: object, loc: str) -> SemverKeep:
    obj = mapping(raw, loc, "semver", ("keep", "per"), required=("keep",))
    per = obj.get("per", "none")
    if per not in SEMVER_SCOPES:
        fail(loc, f"per must be {choices(SEMVER_SCOPES)}, got {show(per)}")
    scope = next(s for s in SEMVER_SCOPES if s == per)
    return SemverKeep(keep=positive_int(obj["keep"], loc, "keep"), per=scope)


def _or_default(value: timedelta | None, default: timedelta) -> timedelta:
    return default if value is None else value


def _duration(obj: Mapping[str, object], key: str, loc: str) -> timedelta | None:
    if key not in obj:
        return None
    try:
        return parse_duration(obj[key])
    except ValueError as error:
        raise PolicyError(f"{loc}: {key}: {error}") from error
