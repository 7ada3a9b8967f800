"""The machine report: one JSON object, every decision with its reason, then the summary.

`repositories` comes first and `summary` last, so the object can be written as repositories
finish (`cleaner.reports.stream`): the summary's figures are sums over them
(`figures.RunFigures`). `report_to_json` builds the same object whole, for the receiver's
answers, where one prune's report is small.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

from cleaner.planning.model import (
    RepositoryReport,
    RunReport,
    TargetFailure,
    Verdict,
)
from cleaner.reports.figures import (
    AGE_BUCKETS,
    AgeHistogram,
    RepositoryFigures,
    RunFigures,
    Totals,
    run_figures,
)


def report_to_json(report: RunReport, now: datetime | None = None) -> dict[str, Any]:
    figures = run_figures(
        report.dry_run, now or datetime.now(UTC), report.repositories, report.failed_targets
    )
    return {
        "dry_run": report.dry_run,
        "repositories": [repository_json(r) for r in report.repositories],
        "failed_targets": [failed_target_json(f) for f in report.failed_targets],
        "summary": summary_json(figures),
    }


def failed_target_json(failure: TargetFailure) -> dict[str, Any]:
    return {
        "account": failure.target.account,
        "region": failure.target.region,
        "error": failure.error,
    }


ENCODER = msgspec.json.Encoder()


# One repository's part of the report as msgspec Structs: the streaming writer encodes them
# directly, and `repository_json` decodes those bytes for the receiver's small answers.
# Structs the garbage collector does not track (`gc=False`) cost a third of what 100,000
# dicts do: https://jcristharif.com/msgspec/structs.html#disabling-garbage-collection
class DecisionDoc(msgspec.Struct, gc=False):
    digest: str
    tags: tuple[str, ...]
    pushed_at: datetime
    size: int
    reason: str


class FailureDoc(msgspec.Struct, gc=False):
    digest: str
    code: str
    message: str


class RepositoryDoc(msgspec.Struct):
    repository: str
    account: str
    region: str
    keep: list[DecisionDoc]
    expire: list[DecisionDoc]
    deleted: tuple[str, ...]
    failed: list[FailureDoc]
    error: str | None


def repository_doc(report: RepositoryReport) -> RepositoryDoc:
    keep: list[DecisionDoc] = []
    expire: list[DecisionDoc] = []
    for decision in report.plan.decisions if report.plan else ():
        image = decision.image
        item = DecisionDoc(image.digest, image.tags, image.pushed_at, image.size, decision.reason)
        (keep if decision.verdict is Verdict.KEEP else expire).append(item)
    return RepositoryDoc(
        repository=report.repository,
        account=report.account,
        region=report.region,
        keep=keep,
        expire=expire,
        deleted=report.deleted,
        failed=[FailureDoc(f.digest, f.code, f.message) for f in report.failed],
        error=report.error,
    )


def repository_json(report: RepositoryReport) -> dict[str, Any]:
    """The dict the stdlib encoder writes as the streaming writer's bytes: it is made from
    them, so the two cannot drift."""
    doc: dict[str, Any] = msgspec.json.decode(ENCODER.encode(repository_doc(report)))
    return doc


def summary_json(figures: RunFigures) -> dict[str, Any]:
    """The figures of the text report's summary table, per repository and in total, and
    its age histogram."""
    return {
        "repositories": [_row(row) for row in figures.ordered],
        "total": _total(figures.totals),
        "ages": _ages(figures.ages),
    }


def _ages(ages: AgeHistogram) -> dict[str, Any]:
    """Images by time since push, per bucket, kept and expiring, with their bytes."""
    return {
        "buckets": [label for label, _ in AGE_BUCKETS],
        "keep": ages.counts[Verdict.KEEP],
        "expire": ages.counts[Verdict.EXPIRE],
        "kept_bytes": ages.sizes[Verdict.KEEP],
        "expire_bytes": ages.sizes[Verdict.EXPIRE],
    }


def _row(row: RepositoryFigures) -> dict[str, Any]:
    return {
        "repository": row.repository,
        "account": row.account,
        "region": row.region,
        "images": row.images,
        "keep": row.keep,
        "expire": row.expire,
        "kept_bytes": row.kept_bytes,
        "reclaimable_bytes": row.expire_bytes,
        "deleted": row.deleted,
        "reclaimed_bytes": row.deleted_bytes,
        "failed": row.failed,
        "error": row.error,
    }


def _total(totals: Totals) -> dict[str, Any]:
    return {
        "repositories": totals.repositories,
        "images": totals.images,
        "keep": totals.keep,
        "expire": totals.expire,
        "kept_bytes": totals.kept_bytes,
        "reclaimable_bytes": totals.expire_bytes,
        "deleted": totals.deleted,
        "reclaimed_bytes": totals.deleted_bytes,
        "failed": totals.failed,
        "repository_errors": totals.repository_errors,
    }
