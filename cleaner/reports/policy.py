"""What `ecr-cleaner validate` prints for a valid policy file: what it will do, in words."""

from __future__ import annotations

from collections.abc import Sequence

from cleaner.planning.policy_file import PolicyFile, RepositoryEntry
from cleaner.planning.protections import Protections
from cleaner.planning.units import format_duration


def describe_policy(policy: PolicyFile) -> str:
    """The summary `ecr-cleaner validate` prints for a valid file."""
    lines = [f"{policy.source}: valid"]
    if policy.entries:
        lines += ["repositories (first match wins):", *_entry_lines(policy.entries, "  ")]
    lines += _target_lines(policy)
    lines.append("protect: " + "; ".join(_protections(policy.protect)))
    contexts = ", ".join(policy.kubernetes.contexts) or "the current one"
    lines.append(f"kubernetes: in_use {policy.in_use}, contexts {contexts}")
    lines += _aws_sources(policy)
    namespace = policy.coordination.namespace or "the pod's namespace in a cluster, off outside"
    lines.append(f"coordination: Leases in {namespace}")
    limit = policy.safety.max_deletions
    lines.append(
        f"safety: keep_at_least {policy.safety.keep_at_least}, "
        f"max_deletions {'none' if limit is None else limit}"
    )
    return "\n".join(lines) + "\n"


def _entry_lines(entries: Sequence[RepositoryEntry], indent: str) -> list[str]:
    lines = []
    for entry in entries:
        rules = (
            "the repository's own ECR lifecycle policy"
            if entry.lifecycle is None
            else _count(len(entry.lifecycle.rules), "rule")
        )
        lines.append(f"{indent}{', '.join(entry.match)}: {rules}")
    if not any("*" in entry.match for entry in entries):
        lines.append(f"{indent}anything else: left alone")
    return lines


def _target_lines(policy: PolicyFile) -> list[str]:
    if not policy.targets:
        return ["targets: the AWS chain's own account (or each --role-arn), in its region"]
    lines = ["targets:"]
    for target in policy.targets:
        who = target.role or "the AWS chain's own account"
        where = ", ".join(target.regions) or "the AWS chain's region"
        lines.append(f"  {who} in {where}")
        if target.entries:
            lines += ["    its own repositories:", *_entry_lines(target.entries, "      ")]
    return lines


def _aws_sources(policy: PolicyFile) -> list[str]:
    """One line per AWS in-use source the file turns on (none when in_use is off)."""
    if policy.in_use == "off":
        return ["other in-use sources: off (protect.in_use: false)"] if policy.aws.names() else []
    aws, lines = policy.aws, []

    def regions(names: tuple[str, ...]) -> str:
        return ", ".join(names) or "the registry's region"

    if aws.ecs:
        clusters = ", ".join(aws.ecs.clusters) or "all"
        scheduled = "with" if aws.ecs.scheduled_tasks else "without"
        lines.append(f"ecs: {regions(aws.ecs.regions)}; clusters {clusters}; newest "
                     f"{aws.ecs.task_definition_revisions} revisions per family; {scheduled} "
                     "scheduled tasks")  # fmt: skip
    if aws.lambda_:
        functions = ", ".join(aws.lambda_.functions) or "all image functions"
        lines.append(f"lambda: {regions(aws.lambda_.regions)}; {functions}; $LATEST, aliased "
                     f"and the newest {aws.lambda_.versions} versions")  # fmt: skip
    if aws.apprunner:
        lines.append(f"apprunner: {regions(aws.apprunner.regions)}; every service")
    if aws.batch:
        lines.append(f"batch: {regions(aws.batch.regions)}; ACTIVE job definitions")
    return lines


def _protections(protect: Protections) -> list[str]:
    parts = []
    if protect.tags:
        parts.append("tags " + ", ".join(protect.tags))
    if protect.tag_regex:
        parts.append("tag_regex " + ", ".join(r.pattern for r in protect.tag_regex))
    if protect.semver:
        parts.append(f"semver top {protect.semver.keep} per {protect.semver.per}")
    parts.append(f"newer_than {format_duration(protect.newer_than, units=1)}")
    window = protect.pulled_within
    parts.append(f"pulled_within {format_duration(window, units=1) if window else 'off'}")
    return parts


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"
