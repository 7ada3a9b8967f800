"""The report renderers: figures that add up, JSON that carries them, text that fits."""

from __future__ import annotations

import io
import re
from datetime import timedelta

import pytest
from rich.console import Console

from cleaner.planning.model import (
    Decision,
    Image,
    Plan,
    RepositoryReport,
    RunReport,
    Verdict,
)
from cleaner.planning.units import format_bytes
from cleaner.reports.figures import (
    AGE_BUCKETS,
    AgeHistogram,
    bucket_of,
    reclaim_bars,
    run_figures,
)
from cleaner.reports.json import report_to_json
from cleaner.reports.text import DETAIL_LIMIT, text_console, write_text
from tests.support.reports import NOW, synthetic_report

ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


def render(report: RunReport, width: int = 100, **options: object) -> str:
    out = io.StringIO()
    write_text(report, NOW, text_console(out, width), **options)  # type: ignore[arg-type]
    return out.getvalue()


def test_the_figures_are_the_sums_of_the_decisions() -> None:
    report = synthetic_report(5, 60, dry_run=False)
    figures = run_figures(False, NOW, report.repositories)
    decisions = [d for r in report.repositories if r.plan for d in r.plan.decisions]
    totals = figures.totals
    assert totals.images == len(decisions) == 300
    assert totals.keep == sum(d.verdict is Verdict.KEEP for d in decisions)
    assert totals.expire_bytes == sum(
        d.image.size for d in decisions if d.verdict is Verdict.EXPIRE
    )
    assert totals.kept_bytes == sum(d.image.size for d in decisions if d.verdict is Verdict.KEEP)
    assert totals.deleted == totals.expire - 5 and totals.failed == 5  # one failure each
    assert totals.deleted_bytes == sum(r.reclaimed for r in report.repositories)
    ages = figures.ages
    assert sum(ages.counts[Verdict.KEEP]) + sum(ages.counts[Verdict.EXPIRE]) == 300
    assert sum(ages.sizes[Verdict.EXPIRE]) == totals.expire_bytes


@pytest.mark.parametrize(
    ("age", "bucket"),
    [
        (timedelta(0), "0-1d"),
        (timedelta(hours=23, minutes=59), "0-1d"),
        (timedelta(days=1), "1-7d"),
        (timedelta(days=7), "7-30d"),
        (timedelta(days=89), "30-90d"),
        (timedelta(days=90), ">90d"),
        (timedelta(days=3000), ">90d"),
    ],
)
def test_age_buckets_hold_ages_below_their_bound(age: timedelta, bucket: str) -> None:
    assert AGE_BUCKETS[bucket_of(age)][0] == bucket
    # The histogram bisects push times instead: it must put the image in the same bucket.
    image = Image(digest="sha256:" + "a" * 64, tags=(), pushed_at=NOW - age, size=7)
    plan = Plan("r", (Decision(image, Verdict.KEEP, "kept"),))
    histogram = AgeHistogram(NOW)
    histogram.add(RepositoryReport("r", plan))
    index = [label for label, _ in AGE_BUCKETS].index(bucket)
    assert histogram.counts[Verdict.KEEP][index] == 1 and histogram.sizes[Verdict.KEEP][index] == 7


def test_the_bars_are_the_top_repositories_then_the_others_together() -> None:
    report = synthetic_report(14, 40)
    figures = run_figures(True, NOW, report.repositories)
    bars = reclaim_bars(figures, top=10)
    ranked = sorted(figures.rows, key=lambda row: -row.expire_bytes)
    assert [bar.label for bar in bars[:10]] == [row.repository for row in ranked[:10]]
    assert bars[10].label == "4 others"
    assert bars[10].value == sum(row.expire_bytes for row in ranked[10:])
    assert sum(bar.value for bar in bars) == figures.totals.expire_bytes
    assert sum(bar.rest for bar in bars) == figures.totals.kept_bytes


def test_a_repository_with_nothing_to_reclaim_gets_no_bar() -> None:
    image = Image("sha256:a", ("v1",), NOW - timedelta(days=3), size=10)
    kept = RepositoryReport("idle", Plan("idle", (Decision(image, Verdict.KEEP, "kept"),)))
    report = RunReport(True, (*synthetic_report(2, 40).repositories, kept))
    labels = [bar.label for bar in reclaim_bars(run_figures(True, NOW, report.repositories))]
    assert "idle" not in labels and len(labels) == 2


def test_json_carries_the_summary_after_the_repositories() -> None:
    report = synthetic_report(3, 40, dry_run=False)
    doc = report_to_json(report, NOW)
    assert list(doc) == ["dry_run", "repositories", "failed_targets", "summary"]
    rows = {row["repository"]: row for row in doc["summary"]["repositories"]}
    for repo in doc["repositories"]:
        row = rows[repo["repository"]]
        assert row["keep"] == len(repo["keep"]) and row["expire"] == len(repo["expire"])
        assert row["reclaimable_bytes"] == sum(i["size"] for i in repo["expire"])
        assert row["kept_bytes"] == sum(i["size"] for i in repo["keep"])
        assert row["deleted"] == len(repo["deleted"]) and row["failed"] == len(repo["failed"])
    total = doc["summary"]["total"]
    assert total["images"] == sum(r["images"] for r in rows.values()) == 120
    assert total["reclaimed_bytes"] == report.reclaimed
    ages = doc["summary"]["ages"]
    assert ages["buckets"] == ["0-1d", "1-7d", "7-30d", "30-90d", ">90d"]
    assert sum(ages["keep"]) + sum(ages["expire"]) == 120


@pytest.mark.parametrize("width", [40, 60, 80, 100, 160])
@pytest.mark.parametrize("dry_run", [True, False])
def test_every_line_fits_the_width(width: int, dry_run: bool) -> None:
    report = synthetic_report(12, 30, dry_run=dry_run, prefix="a-rather-long-team-name/" * 3)
    text = render(report, width, details=True)
    longest = max(text.splitlines(), key=len)
    assert len(longest) <= width, longest


def test_the_text_opens_with_the_summary_and_shows_both_pictures() -> None:
    report = synthetic_report(4, 20)
    figures = run_figures(True, NOW, report.repositories)
    lines = render(report).splitlines()
    assert lines[0] == "Plan (dry run: nothing deleted)"
    header = next(line for line in lines if line.lstrip().startswith("REPOSITORY"))
    assert header.split() == [
        "REPOSITORY", "IMAGES", "KEEP", "EXPIRE", "KEPT", "RECLAIMABLE", "ERRORS",
    ]  # fmt: skip
    total = next(line for line in lines if line.lstrip().startswith("total"))
    assert total.split()[-3:-1] == format_bytes(figures.totals.expire_bytes).split()
    assert lines.index(header) < 4
    bars = lines.index("Bytes reclaimable by repository (full: reclaimable, light: kept)")
    ages = lines.index("Image age since push (full: expire, light: keep)")
    assert bars < ages
    assert all("█" in line for line in lines[bars + 1 : bars + 5])
    assert [line.split()[0] for line in lines[ages + 1 : ages + 6]] == [
        label for label, _ in AGE_BUCKETS
    ]


def test_a_sweep_summary_shows_what_was_deleted_and_every_failure() -> None:
    report = synthetic_report(3, 30, dry_run=False)
    text = render(report)
    header = next(line for line in text.splitlines() if "REPOSITORY" in line)
    assert "DELETED" in header and "RECLAIMED" in header and "RECLAIMABLE" not in header
    assert text.count(": not deleted ") == 3 and text.count("KmsError") == 3
    assert " ".join(text.split()).endswith("3 failed, 0 repository errors")


def test_per_image_rows_by_default_only_for_small_runs() -> None:
    small = synthetic_report(2, DETAIL_LIMIT // 2)
    large = synthetic_report(2, DETAIL_LIMIT // 2 + 1)
    assert "VERDICT" in render(small)
    assert "VERDICT" not in render(large)
    assert f"{DETAIL_LIMIT + 2} per-image decisions not shown: --details" in render(large)
    assert "VERDICT" in render(large, details=True)
    assert "VERDICT" not in render(small, details=False)


def test_registry_strings_are_text_never_markup() -> None:
    image = Image("sha256:ab", ("[bold red]x[/]", ":smile:"), NOW - timedelta(days=2), size=1)
    plan = Plan("team/app", (Decision(image, Verdict.KEEP, "kept: [link=x]y[/link]"),))
    text = render(RunReport(True, (RepositoryReport("team/app", plan),)))
    assert "[bold red]x[/]" in text and ":smile:" in text and "[link=x]y[/link]" in text


def test_piped_there_are_no_escape_codes_and_on_a_terminal_colours_unless_no_color(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    report = synthetic_report(2, 20)
    assert "\x1b" not in render(report)
    monkeypatch.delenv("NO_COLOR", raising=False)
    out = io.StringIO()
    write_text(report, NOW, Console(file=out, width=100, force_terminal=True, markup=False))
    assert "\x1b[31m" in out.getvalue() and "\x1b[32m" in out.getvalue()  # red and green
    monkeypatch.setenv("NO_COLOR", "1")
    out = io.StringIO()
    write_text(report, NOW, Console(file=out, width=100, force_terminal=True, markup=False))
    colours = [code for code in ESCAPE.findall(out.getvalue()) if re.search(r"\[3\d", code)]
    assert colours == []


def test_a_console_that_cannot_write_blocks_draws_ascii() -> None:
    raw = io.BytesIO()
    out = io.TextIOWrapper(raw, encoding="ascii", errors="strict")  # any other byte raises
    write_text(synthetic_report(2, 20), NOW, text_console(out, 100), details=True)
    out.flush()
    assert "###" in raw.getvalue().decode("ascii")
