"""The figures every report opens with, counted one repository at a time.

Each renderer (text, JSON, HTML) reads these instead of walking the whole `RunReport`
again, and every figure is a sum: a report can be built as repositories finish, without
holding the ones already written.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from cleaner.planning.model import RepositoryReport, Target, TargetFailure, Verdict

AGE_BUCKETS: tuple[tuple[str, timedelta | None], ...] = (
    ("0-1d", timedelta(days=1)),
    ("1-7d", timedelta(days=7)),
    ("7-30d", timedelta(days=30)),
    ("30-90d", timedelta(days=90)),
    (">90d", None),
)
"""Histogram buckets of image age (time since push): each holds ages below its bound."""


class Counts(Protocol):
    """What a summary row shows, for one repository or the total."""

    @property
    def images(self) -> int: ...
    @property
    def keep(self) -> int: ...
    @property
    def expire(self) -> int: ...
    @property
    def kept_bytes(self) -> int: ...
    @property
    def expire_bytes(self) -> int: ...
    @property
    def deleted(self) -> int: ...
    @property
    def deleted_bytes(self) -> int: ...
    @property
    def errors(self) -> int: ...


def shown_bytes(counts: Counts, dry_run: bool) -> int:
    """The bytes column: reclaimable on a dry run, reclaimed after a sweep."""
    return counts.expire_bytes if dry_run else counts.deleted_bytes


@dataclass(frozen=True, slots=True)
class RepositoryFigures:
    """One repository's row of the summary."""

    repository: str
    images: int = 0
    keep: int = 0
    expire: int = 0
    kept_bytes: int = 0
    expire_bytes: int = 0
    """Bytes of the images planned to expire: reclaimable on a dry run."""
    deleted: int = 0
    deleted_bytes: int = 0
    """Bytes of the images deleted: reclaimed (zero on a dry run)."""
    failed: int = 0
    error: str | None = None
    account: str = ""
    region: str = ""

    @property
    def errors(self) -> int:
        """Images that could not be deleted, plus one when the repository itself failed."""
        return self.failed + (1 if self.error else 0)

    @property
    def target(self) -> str:
        """`account/region`, or "" for a registry that has neither."""
        return target_name(self.account, self.region)


def target_name(account: str, region: str) -> str:
    return str(Target(account, region)) if account or region else ""


def repository_figures(
    report: RepositoryReport, ages: AgeHistogram | None = None
) -> RepositoryFigures:
    """The repository's row, and its images added to `ages` in the same pass."""
    plan = report.plan
    account, region = report.account, report.region
    if plan is None:
        return RepositoryFigures(
            report.repository, error=report.error, account=account, region=region
        )
    counts = {Verdict.KEEP: 0, Verdict.EXPIRE: 0}
    sizes = {Verdict.KEEP: 0, Verdict.EXPIRE: 0}
    for decision in plan.decisions:
        verdict, image = decision.verdict, decision.image
        counts[verdict] += 1
        sizes[verdict] += image.size
        if ages is not None:
            index = ages.bucket(image.pushed_at)
            ages.counts[verdict][index] += 1
            ages.sizes[verdict][index] += image.size
    return RepositoryFigures(
        repository=report.repository,
        images=len(plan.decisions),
        keep=counts[Verdict.KEEP],
        expire=counts[Verdict.EXPIRE],
        kept_bytes=sizes[Verdict.KEEP],
        expire_bytes=sizes[Verdict.EXPIRE],
        deleted=len(report.deleted),
        deleted_bytes=report.reclaimed,
        failed=len(report.failed),
        error=report.error,
        account=account,
        region=region,
    )


@dataclass(slots=True)
class Totals:
    """The total row: sums of the repository rows."""

    repositories: int = 0
    images: int = 0
    keep: int = 0
    expire: int = 0
    kept_bytes: int = 0
    expire_bytes: int = 0
    deleted: int = 0
    deleted_bytes: int = 0
    failed: int = 0
    repository_errors: int = 0

    def add(self, row: RepositoryFigures) -> None:
        self.repositories += 1
        self.images += row.images
        self.keep += row.keep
        self.expire += row.expire
        self.kept_bytes += row.kept_bytes
        self.expire_bytes += row.expire_bytes
        self.deleted += row.deleted
        self.deleted_bytes += row.deleted_bytes
        self.failed += row.failed
        self.repository_errors += 1 if row.error else 0

    @property
    def errors(self) -> int:
        return self.failed + self.repository_errors


@dataclass(slots=True)
class AgeHistogram:
    """Images per age bucket and verdict, and their bytes."""

    now: datetime
    counts: dict[Verdict, list[int]] = field(default_factory=dict)
    sizes: dict[Verdict, list[int]] = field(default_factory=dict)

    cutoffs: list[datetime] = field(init=False)
    """The push times at the buckets' bounds, oldest first: one bisection per image."""

    def __post_init__(self) -> None:
        for verdict in Verdict:
            self.counts[verdict] = [0] * len(AGE_BUCKETS)
            self.sizes[verdict] = [0] * len(AGE_BUCKETS)
        self.cutoffs = sorted(self.now - bound for _, bound in AGE_BUCKETS if bound is not None)

    def bucket(self, pushed_at: datetime) -> int:
        # Pushed exactly at a bound is as old as the bound: the older bucket (age < bound).
        return len(AGE_BUCKETS) - 1 - bisect_left(self.cutoffs, pushed_at)

    def add(self, report: RepositoryReport) -> None:
        for decision in report.plan.decisions if report.plan else ():
            index = self.bucket(decision.image.pushed_at)
            self.counts[decision.verdict][index] += 1
            self.sizes[decision.verdict][index] += decision.image.size


def bucket_of(age: timedelta) -> int:
    for index, (_, bound) in enumerate(AGE_BUCKETS):
        if bound is None or age < bound:
            return index
    return len(AGE_BUCKETS) - 1  # pragma: no cover - the last bucket has no bound


@dataclass(slots=True)
class RunFigures:
    """Everything a report's summary and pictures need, added one repository at a time."""

    dry_run: bool
    now: datetime
    rows: list[RepositoryFigures] = field(default_factory=list)
    totals: Totals = field(default_factory=Totals)
    ages: AgeHistogram = field(init=False)
    failed_targets: tuple[TargetFailure, ...] = ()
    """Targets that could not be listed at all (they have no rows)."""

    def __post_init__(self) -> None:
        self.ages = AgeHistogram(self.now)

    def add(self, report: RepositoryReport) -> RepositoryFigures:
        row = repository_figures(report, self.ages)
        self.rows.append(row)
        self.totals.add(row)
        return row

    @property
    def ordered(self) -> list[RepositoryFigures]:
        """The rows by target, then by name: how every summary lists them."""
        return sorted(self.rows, key=lambda row: (row.account, row.region, row.repository))

    @property
    def by_target(self) -> bool:
        """Did the run span several targets? Reports then group their rows by target."""
        named = {row.target for row in self.rows}
        named |= {str(f.target) for f in self.failed_targets}
        return len(named) > 1


def run_figures(
    dry_run: bool,
    now: datetime,
    reports: Iterable[RepositoryReport],
    failed_targets: tuple[TargetFailure, ...] = (),
) -> RunFigures:
    figures = RunFigures(dry_run, now, failed_targets=failed_targets)
    for report in reports:
        figures.add(report)
    return figures


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    value: int
    """The bytes the bar stands for (reclaimable on a dry run, reclaimed after a sweep)."""
    rest: int
    """The bytes kept beside it."""


def reclaim_bars(figures: RunFigures, top: int = 10) -> list[Bar]:
    """The `top` repositories by bytes reclaimable (or reclaimed), then one bar for the
    others together; repositories with nothing to reclaim are left out of the top."""

    def value(row: RepositoryFigures) -> int:
        return shown_bytes(row, figures.dry_run)

    ranked = sorted(figures.rows, key=lambda row: (-value(row), row.repository))
    shown = [row for row in ranked[:top] if value(row) > 0]  # the zeros come last

    def label(row: RepositoryFigures) -> str:
        return f"{row.target} {row.repository}" if figures.by_target else row.repository

    bars = [Bar(label(row), value(row), row.kept_bytes) for row in shown]
    others = ranked[len(shown) :]
    if others and len(ranked) > top:
        bars.append(
            Bar(
                f"{len(others)} others",
                sum(value(row) for row in others),
                sum(row.kept_bytes for row in others),
            )
        )
    return bars
