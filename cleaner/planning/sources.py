"""The policy file's in-use source sections beside `kubernetes:`: `ecs:`, `lambda:`,
`apprunner:` and `batch:`.

A section's presence turns its source on (`{}` means its defaults: every cluster or
function in the registry's own region); `protect.in_use: false` turns every source off.
Each source is read in the registry's region unless `regions` lists others: a consumer in
another region may pull from this registry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from cleaner.planning.checks import fail, mapping, show
from cleaner.planning.names import is_region

SOURCE_SECTIONS = ("ecs", "lambda", "apprunner", "batch")
MAX_REVISIONS = 100
"""Rollback targets a source may keep per family or function; more is a typo."""


@dataclass(frozen=True, slots=True)
class EcsSection:
    regions: tuple[str, ...] = ()
    """() = the registry's region."""
    clusters: tuple[str, ...] = ()
    """Globs on cluster names; () = every cluster."""
    task_definition_revisions: int = 5
    """The newest ACTIVE revisions of each task-definition family to keep: rollback
    targets. Five covers a circuit breaker's rollback to the last completed deployment and
    a few manual steps back, for one DescribeTaskDefinition call each."""
    scheduled_tasks: bool = True
    """Also the task definitions EventBridge rules and Scheduler schedules run."""


@dataclass(frozen=True, slots=True)
class LambdaSection:
    regions: tuple[str, ...] = ()
    functions: tuple[str, ...] = ()
    """Globs on function names; () = every function of package type Image."""
    versions: int = 3
    """The newest published versions of each function to keep, beside $LATEST and every
    version an alias points to: the targets of a `update-alias` rollback."""


@dataclass(frozen=True, slots=True)
class AppRunnerSection:
    regions: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class BatchSection:
    regions: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AwsSources:
    """The AWS in-use sections of a policy file; None = that source is off."""

    ecs: EcsSection | None = None
    lambda_: LambdaSection | None = None
    apprunner: AppRunnerSection | None = None
    batch: BatchSection | None = None

    def names(self) -> tuple[str, ...]:
        found = [("ecs", self.ecs), ("lambda", self.lambda_), ("apprunner", self.apprunner),
                 ("batch", self.batch)]  # fmt: skip
        return tuple(name for name, section in found if section is not None)


def parse_sources(top: Mapping[str, object], source: str) -> AwsSources:
    """The sections present in the policy file's top-level mapping, validated."""

    def loc(name: str) -> str:
        return f"{source}: {name}"

    return AwsSources(
        ecs=_ecs(top["ecs"], loc("ecs")) if "ecs" in top else None,
        lambda_=_lambda(top["lambda"], loc("lambda")) if "lambda" in top else None,
        apprunner=_apprunner(top["apprunner"], loc("apprunner")) if "apprunner" in top else None,
        batch=_batch(top["batch"], loc("batch")) if "batch" in top else None,
    )


def _section(raw: object, loc: str, keys: tuple[str, ...]) -> Mapping[str, object]:
    """`{}` and an empty YAML value (`ecs:`) both mean: the defaults."""
    what = loc.rsplit(": ", 1)[-1]
    return mapping({} if raw is None else raw, loc, what, ("regions", *keys), required=())


def _ecs(raw: object, loc: str) -> EcsSection:
    obj = _section(raw, loc, ("clusters", "task_definition_revisions", "scheduled_tasks"))
    scheduled = obj.get("scheduled_tasks", True)
    if not isinstance(scheduled, bool):
        fail(loc, f"scheduled_tasks must be true or false, got {show(scheduled)}")
    return EcsSection(
        regions=_regions(obj, loc),
        clusters=_names(obj, loc, "clusters"),
        task_definition_revisions=_count(obj, loc, "task_definition_revisions", 5),
        scheduled_tasks=scheduled,
    )


def _lambda(raw: object, loc: str) -> LambdaSection:
    obj = _section(raw, loc, ("functions", "versions"))
    return LambdaSection(
        regions=_regions(obj, loc),
        functions=_names(obj, loc, "functions"),
        versions=_count(obj, loc, "versions", 3),
    )


def _apprunner(raw: object, loc: str) -> AppRunnerSection:
    return AppRunnerSection(_regions(_section(raw, loc, ()), loc))


def _batch(raw: object, loc: str) -> BatchSection:
    return BatchSection(_regions(_section(raw, loc, ()), loc))


def _regions(obj: Mapping[str, object], loc: str) -> tuple[str, ...]:
    regions = _names(obj, loc, "regions")
    for region in regions:
        if not is_region(region):
            fail(loc, f"regions: {show(region)} is not an AWS region name")
    return regions


def _names(obj: Mapping[str, object], loc: str, key: str) -> tuple[str, ...]:
    raw = obj.get(key, [])
    if not isinstance(raw, list) or not all(isinstance(v, str) and v for v in raw):
        fail(loc, f"{key} must be a list of non-empty strings, got {show(raw)}")
    return tuple(raw)


def _count(obj: Mapping[str, object], loc: str, key: str, default: int) -> int:
    value = obj.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_REVISIONS:
        fail(loc, f"{key} must be a whole number from 0 to {MAX_REVISIONS}, got {show(value)}")
    return value
