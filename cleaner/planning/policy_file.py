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
from cleaner.planning.checks import (
    MAX_COUNT,
    Problems,
    choices,
    fail,
    mapping,
    positive_int,
    show,
)
from cleaner.planning.documents import decode, read_text
from cleaner.planning.lifecycle import parse_policy
from cleaner.planning.model import LifecyclePolicy
from cleaner.planning.names import registry_url
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
    "repositories", "registry", "targets", "protect", "safety", "kubernetes", "coordination",
    *SOURCE_SECTIONS,
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
    registry: str | None = None
    """`registry:`: an OCI Distribution registry's URL to prune instead of ECR (`--registry`
    wins over it); None = ECR."""
    source: str = "policy"

    def entry_for(self, repository: str) -> RepositoryEntry | None:
        """The first entry whose globs match; None means: leave the repository alone."""
        return next((e for e in self.entries if e.matches(repository)), None)


def load_policy_file(path: str | Path) -> PolicyFile:
    """Read and validate a policy file (YAML or JSON); PolicyError names what is wrong."""
    source = str(path)
    return parse_policy_file(decode(read_text(source, source), source), source)


def parse_policy_file(doc: object, source: str = "policy") -> PolicyFile:
    """The validated file; a PolicyError holds every problem found (`checks.Problems`)."""
    if not isinstance(doc, dict):
        fail(source, f"expected a mapping with 'repositories' or 'rules', got {show(doc)}")
    if "rules" in doc:  # a bare ECR lifecycle document: one entry for every repository
        return _bare_document(doc, source)
    with Problems() as problems:
        top = mapping(doc, source, "the policy file", _TOP_KEYS, required=(), problems=problems)
        targets: tuple[TargetEntry[RepositoryEntry], ...] = ()
        if "targets" in top:
            where = f"{source}: targets"
            targets = problems.attempt((), parse_targets, top["targets"], where, _target_entries)
        if "repositories" not in top and not (targets and all(t.entries for t in targets)):
            problems.note(source, 'the policy file is missing required key "repositories"')
        protect = top.get("protect", {})
        entries: tuple[RepositoryEntry, ...] = ()
        if "repositories" in top:
            entries = problems.attempt((), _entries, top["repositories"], source, problems)
        policy = PolicyFile(
            entries=entries,
            protect=problems.attempt(Protections(), parse_protect, protect, f"{source}: protect"),
            safety=problems.attempt(
                Safety(), parse_safety, top.get("safety", {}), f"{source}: safety"
            ),
            in_use=problems.attempt("auto", _in_use_mode, protect, source),
            kubernetes=problems.attempt(
                KubernetesSection(),
                parse_kubernetes,
                top.get("kubernetes", {}),
                f"{source}: kubernetes",
            ),
            coordination=problems.attempt(
                CoordinationSection(),
                parse_coordination,
                top.get("coordination", {}),
                f"{source}: coordination",
            ),
            aws=problems.attempt(AwsSources(), parse_sources, top, source),
            targets=targets,
            registry=problems.attempt(None, _registry, top, source, bool(targets)),
            source=source,
        )
    return policy


def _bare_document(doc: Mapping[str, object], source: str) -> PolicyFile:
    with Problems() as problems:
        for extra in sorted(set(doc) - {"rules"}):
            problems.note(
                source, f'a bare ECR lifecycle document has only "rules"; found "{extra}"'
            )
        lifecycle = problems.attempt(None, parse_policy, {"rules": doc["rules"]}, where=source)
    return PolicyFile((RepositoryEntry(("*",), lifecycle),), source=source)


def _registry(top: Mapping[str, object], source: str, has_targets: bool) -> str | None:
    raw = top.get("registry")
    if raw is None:
        return None
    if has_targets:
        fail(source, "registry names one OCI registry; targets are ECR accounts: give one")
    if not isinstance(raw, str):
        fail(source, f"registry must be a URL, got {show(raw)}")
    try:
        return registry_url(raw)
    except ValueError as error:
        raise PolicyError(f"{source}: registry {show(raw)}: {error}") from None


def _in_use_mode(protect: object, source: str) -> str:
    mode = protect.get("in_use", "auto") if isinstance(protect, dict) else "auto"
    if not (isinstance(mode, bool) or mode == "auto"):
        fail(f"{source}: protect", f'in_use must be "auto", true or false, got {show(mode)}')
    return _IN_USE_MODES[mode]


def parse_kubernetes(raw: object, loc: str) -> KubernetesSection:
    with Problems() as problems:
        kube = mapping(raw, loc, None, ("contexts", "kubeconfig"), required=(), problems=problems)
        kubeconfig = problems.attempt(None, _path, kube.get("kubeconfig"), loc, "kubeconfig")
        contexts = problems.attempt((), _strings, kube.get("contexts", []), loc, "contexts")
    return KubernetesSection(contexts=contexts, kubeconfig=kubeconfig)


def _path(value: object, loc: str, name: str) -> str | None:
    if value is not None and not isinstance(value, str):
        fail(loc, f"{name} must be a path, got {show(value)}")
    return value


def parse_coordination(raw: object, loc: str) -> CoordinationSection:
    keys = ("namespace", "lease_seconds")
    with Problems() as problems:
        coordination = mapping(raw, loc, None, keys, required=(), problems=problems)
        namespace = problems.attempt(None, _namespace, coordination.get("namespace"), loc)
        # A day at most: a Lease that outlives a crashed holder by longer blocks every prune.
        seconds = problems.attempt(
            60, positive_int, coordination.get("lease_seconds", 60), loc, "lease_seconds", 86_400
        )
    return CoordinationSection(namespace=namespace, lease_seconds=seconds)


def _namespace(value: object, loc: str) -> str | None:
    if value is not None and not (isinstance(value, str) and value):
        fail(loc, f"namespace must be a name, got {show(value)}")
    return value


def _target_entries(raw: object, loc: str) -> tuple[RepositoryEntry, ...]:
    """A target's own `repositories:`, every problem in them reported."""
    with Problems() as problems:
        entries = _entries(raw, loc, problems)
    return entries


def _entries(raw: object, loc: str, problems: Problems) -> tuple[RepositoryEntry, ...]:
    if not isinstance(raw, list) or not raw:
        fail(loc, f"repositories must be a non-empty list of entries, got {show(raw)}")
    where = loc if loc.endswith(": repositories") else f"{loc}: repositories"
    entries = [
        problems.attempt(None, _entry, item, f"{where}[{i}]", problems)
        for i, item in enumerate(raw)
    ]
    return tuple(entry for entry in entries if entry is not None)


def _entry(raw: object, loc: str, problems: Problems) -> RepositoryEntry:
    obj = mapping(raw, loc, "the entry", _ENTRY_KEYS, required=_ENTRY_KEYS, problems=problems)
    with Problems() as parts:
        globs = parts.attempt((), _globs, obj["match"], loc)
        if globs:
            loc = f"{loc} (match {show(list(globs) if len(globs) > 1 else globs[0])})"
        rules = obj["rules"]
        lifecycle = None if rules == USE_ECR_POLICY else parts.attempt(None, _rules, rules, loc)
    return RepositoryEntry(globs, lifecycle)


def _rules(rules: object, loc: str) -> LifecyclePolicy:
    if not isinstance(rules, list):
        fail(loc, f'rules must be a list of ECR lifecycle rules or "ecr", got {show(rules)}')
    return parse_policy({"rules": rules}, where=loc)


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
    """Each protection is checked on its own, so every bad one is named."""
    with Problems() as problems:
        obj = mapping(raw, loc, None, _PROTECT_KEYS, required=(), problems=problems)
        tags = problems.attempt((), _strings, obj.get("tags", []), loc, "tags")
        tag_regex = problems.attempt((), _regexes, obj.get("tag_regex", []), loc)
        semver = None
        if "semver" in obj:
            semver = problems.attempt(None, _semver, obj["semver"], f"{loc}.semver")
        newer_than = problems.attempt(None, _duration, obj, "newer_than", loc)
        pulled_within = problems.attempt(None, _duration, obj, "pulled_within", loc)
    return Protections(
        tags=tags,
        tag_regex=tag_regex,
        semver=semver,
        newer_than=_or_default(newer_than, Protections().newer_than),
        pulled_within=pulled_within,
    )


def parse_safety(raw: object, loc: str) -> Safety:
    with Problems() as problems:
        obj = mapping(raw, loc, None, _SAFETY_KEYS, required=(), problems=problems)
        keep = problems.attempt(
            Safety().keep_at_least, _keep_at_least, obj.get("keep_at_least", 1), loc
        )
        limit = obj.get("max_deletions")
        max_deletions = None
        if limit is not None:
            max_deletions = problems.attempt(None, positive_int, limit, loc, "max_deletions")
    return Safety(keep_at_least=keep, max_deletions=max_deletions)


def _keep_at_least(keep: object, loc: str) -> int:
    if isinstance(keep, bool) or not isinstance(keep, int) or not 0 <= keep <= MAX_COUNT:
        fail(
            loc,
            f"keep_at_least must be a whole number >= 0 (at most {MAX_COUNT}), got {show(keep)}",
        )
    return keep


def _strings(raw: object, loc: str, name: str) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(v, str) and v for v in raw):
        fail(loc, f"{name} must be a list of non-empty strings, got {show(raw)}")
    return tuple(raw)


def _regexes(raw: object, loc: str) -> tuple[TagRegex, ...]:
    return tuple(_regex(pattern, loc) for pattern in _strings(raw, loc, "tag_regex"))


def _regex(pattern: str, loc: str) -> TagRegex:
    try:
        return compile_tag_regex(pattern)
    except ValueError as error:
        raise PolicyError(
            f"{loc}: tag_regex {show(pattern)} is not a valid regex for RE2 (linear-time "
            f"matching, so no backreferences or lookaround): {str(error)[:80]}"
        ) from None


def _semver(raw: object, loc: str) -> SemverKeep:
    obj = mapping(raw, loc, None, ("keep", "per"), required=("keep",))
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
