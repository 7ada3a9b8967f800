"""Render a RunReport for people (text) and for machines (one JSON object)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from cleaner.planning.model import Decision, RepositoryReport, RunReport, Target, iso_utc
from cleaner.planning.policy_file import PolicyFile, RepositoryEntry
from cleaner.planning.protections import Protections
from cleaner.planning.units import format_bytes, format_duration


def report_to_json(report: RunReport) -> dict[str, Any]:
    return {
        "dry_run": report.dry_run,
        "repositories": [_repository_json(r) for r in report.repositories],
        "failed_targets": [
            {"account": f.target.account, "region": f.target.region, "error": f.error}
            for f in report.failed_targets
        ],
    }


def _repository_json(report: RepositoryReport) -> dict[str, Any]:
    plan = report.plan
    return {
        "repository": report.repository,
        "account": report.account,
        "region": report.region,
        "keep": [_item(d) for d in plan.keep] if plan else [],
        "expire": [_item(d) for d in plan.expire] if plan else [],
        "deleted": list(report.deleted),
        "failed": [
            {"digest": f.digest, "code": f.code, "message": f.message} for f in report.failed
        ],
        "error": report.error,
    }


def _item(decision: Decision) -> dict[str, Any]:
    image = decision.image
    return {
        "digest": image.digest,
        "tags": list(image.tags),
        "pushed_at": iso_utc(image.pushed_at),
        "size": image.size,
        "reason": decision.reason,
    }


def render_text(report: RunReport, now: datetime, max_rows: int | None = None) -> str:
    """A table per repository, under a heading per target when the run had several;
    `max_rows` shortens each table (the demo uses it)."""
    lines: list[str] = []
    groups = _by_target(report)
    for target, repositories in groups.items():
        if len(groups) > 1 or report.failed_targets:
            lines += [f"== {target} ==", ""]
        for repo in repositories:
            lines.extend(_repository_lines(repo, now, report.dry_run, max_rows))
            lines.append("")
    for failed in report.failed_targets:
        lines += [f"== {failed.target} ==", f"ERROR {failed.error}", ""]
    lines.append(summary(report))
    return "\n".join(lines) + "\n"


def _by_target(report: RunReport) -> dict[str, list[RepositoryReport]]:
    groups: dict[str, list[RepositoryReport]] = {}
    for repo in report.repositories:
        groups.setdefault(str(Target(repo.account, repo.region)), []).append(repo)
    return groups


def _repository_lines(
    repo: RepositoryReport, now: datetime, dry_run: bool, max_rows: int | None
) -> list[str]:
    if repo.plan is None:
        return [f"{repo.repository}: ERROR {repo.error}"]
    plan = repo.plan
    head = (
        f"{repo.repository}: {len(plan.decisions)} images, "
        f"keep {len(plan.keep)}, expire {len(plan.expire)}"
    )
    if not dry_run:
        head += f", deleted {len(repo.deleted)}, failed {len(repo.failed)}"
    if repo.error:
        head += f"  ERROR {repo.error}"
    rows: list[tuple[str, ...]] = [("ACTION", "DIGEST", "TAGS", "AGE", "SIZE", "REASON")]
    shown = plan.decisions if max_rows is None else plan.decisions[:max_rows]
    rows += [_row(d, now) for d in shown]
    lines = [head, *_table(rows)]
    if len(shown) < len(plan.decisions):
        lines.append(f"  ... {len(plan.decisions) - len(shown)} more")
    lines += [f"  failed {f.digest}: {f.code} {f.message}" for f in repo.failed]
    return lines


def _row(decision: Decision, now: datetime) -> tuple[str, ...]:
    image = decision.image
    tags = ",".join(image.tags) or "<untagged>"
    if len(tags) > 40:
        tags = tags[:37] + "..."
    return (
        decision.verdict.value,
        image.digest.removeprefix("sha256:")[:12],
        tags,
        format_duration(now - image.pushed_at, units=1),
        format_bytes(image.size),
        decision.reason,
    )


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return [
        "  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[-1]
        for row in rows
    ]


def summary(report: RunReport) -> str:
    plans = [r.plan for r in report.repositories if r.plan]
    images = sum(len(p.decisions) for p in plans)
    expire = sum(len(p.expire) for p in plans)
    deleted = sum(len(r.deleted) for r in report.repositories)
    errors = sum(1 for r in report.repositories if r.error)
    failed = sum(len(r.failed) for r in report.repositories)
    text = f"{len(report.repositories)} repositories, {images} images, {expire} to expire"
    if report.dry_run:
        text += " (dry run: nothing deleted)"
    else:
        outcome = f"{deleted} deleted ({format_bytes(report.reclaimed)}), {failed} failed"
        text = f"{text}, {outcome}, {errors} repository errors"
    if report.failed_targets:
        text += f"; {_count(len(report.failed_targets), 'target')} could not be swept"
    return text


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
