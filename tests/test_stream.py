"""Reports written as repositories finish: the streamed JSON is the whole report's JSON,
JSON Lines carry the same parts line by line, and nothing holds the plans it has written."""

from __future__ import annotations

import io
import json
import re
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cleaner.engine import Engine, Progress, SweepRequest
from cleaner.planning.model import RepositoryReport, RunReport, Target, TargetFailure
from cleaner.registries.ecr import EcrRegistry
from cleaner.reports.json import report_to_json
from cleaner.reports.stream import JsonlWriter, JsonWriter, ReportWriter, open_writer
from cleaner.reports.text import DETAIL_LIMIT, TextWriter, text_console
from tests.support.backends import EmulatorBackend
from tests.support.cli import run_cli
from tests.support.policies import keep_newest_everywhere
from tests.support.reports import NOW, synthetic_report
from tests.test_cli import keep_policy, push_daily

FAILED = (TargetFailure(Target("210987654321", "us-east-1"), "AccessDenied: no role"),)


def feed(writer: ReportWriter, report: RunReport) -> None:
    for repository in report.repositories:
        writer.repository(repository)
    writer.finish(replace(report, repositories=()))  # what the engine keeps: no plans


@pytest.mark.parametrize("dry_run", [True, False])
def test_the_streamed_json_is_the_whole_reports_json(dry_run: bool) -> None:
    report = replace(synthetic_report(6, 40, dry_run=dry_run), failed_targets=FAILED)
    out = io.StringIO()
    feed(JsonWriter(out, dry_run=dry_run, now=NOW), report)
    assert json.loads(out.getvalue()) == report_to_json(report, NOW)
    # One repository per line, so a person can page through it and a tool can split it.
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 + 6 + 1 and lines[0] == '{"dry_run":%s,"repositories":[' % (
        "true" if dry_run else "false"
    )


def test_repositories_come_in_the_order_they_finish_and_the_summary_sorts_them() -> None:
    report = synthetic_report(3, 20)
    finished = tuple(reversed(report.repositories))
    out = io.StringIO()
    feed(JsonWriter(out, dry_run=True, now=NOW), replace(report, repositories=finished))
    doc = json.loads(out.getvalue())
    assert [r["repository"] for r in doc["repositories"]] == [r.repository for r in finished]
    rows = [row["repository"] for row in doc["summary"]["repositories"]]
    assert rows == sorted(rows)


def test_an_empty_run_is_still_one_well_formed_object() -> None:
    out = io.StringIO()
    feed(JsonWriter(out, dry_run=True, now=NOW), RunReport(dry_run=True))
    doc = json.loads(out.getvalue())
    assert doc["repositories"] == [] and doc["summary"]["total"]["repositories"] == 0


def test_json_lines_carry_each_repository_then_the_summary() -> None:
    report = replace(synthetic_report(4, 30, dry_run=False), failed_targets=FAILED)
    out = io.StringIO()
    feed(JsonlWriter(out, dry_run=False, now=NOW), report)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    whole = report_to_json(report, NOW)
    assert [line["type"] for line in lines] == ["repository"] * 4 + ["summary"]
    assert [{k: v for k, v in line.items() if k != "type"} for line in lines[:4]] == whole[
        "repositories"
    ]
    summary = lines[-1]
    assert summary["dry_run"] is False and summary["failed_targets"] == whole["failed_targets"]
    assert {k: summary[k] for k in ("repositories", "total", "ages")} == whole["summary"]


def test_the_text_report_lets_go_of_the_plans_of_a_large_run() -> None:
    """Past DETAIL_LIMIT images the tables are not printed, so their plans are not held;
    the repositories with problems are, without their plans."""
    writer = TextWriter(text_console(io.StringIO()), dry_run=False, now=NOW)
    report = synthetic_report(4, DETAIL_LIMIT, dry_run=False)
    for repository in report.repositories:
        writer.repository(repository)
    assert writer.tables is None
    assert len(writer.problems) == 4 and all(r.plan is None for r in writer.problems)


@pytest.mark.parametrize("output", ["text", "json", "jsonl", "html"])
def test_every_output_writes_the_same_totals(output: str) -> None:
    report = synthetic_report(3, 30)
    out = io.StringIO()
    feed(open_writer(output, out, dry_run=True, now=NOW), report)
    expire = sum(len(r.plan.expire) for r in report.repositories if r.plan)
    text = out.getvalue()
    if output == "json":
        assert json.loads(text)["summary"]["total"]["expire"] == expire
    elif output == "jsonl":
        assert json.loads(text.splitlines()[-1])["total"]["expire"] == expire
    else:
        assert re.search(rf"\b{expire} to expire\b", text), text[-400:]


async def test_a_run_that_drops_plans_hands_each_one_over_first(
    emulator: EmulatorBackend,
) -> None:
    """`keep_plans=False`: the run's report holds outcomes only; every plan reached the
    callback whole before it was let go."""
    for name in ("api", "job", "web"):
        push_daily(emulator, name, 4)
    policy = keep_newest_everywhere(1)
    seen: list[RepositoryReport] = []
    request = SweepRequest(policy=policy, now=datetime.now(UTC), apply=True, keep_plans=False)
    async with EcrRegistry.connect(endpoint_url=emulator.endpoint_url) as registry:
        report = await Engine(registry).run(request, Progress(on_repository_done=seen.append))
    assert sorted(r.repository for r in seen) == ["api", "job", "web"]
    assert all(r.plan is not None and len(r.plan.expire) == 3 for r in seen)
    assert all(r.plan is None for r in report.repositories)
    assert report.ok and sorted(len(r.deleted) for r in report.repositories) == [3, 3, 3]


async def test_plan_output_jsonl_from_the_cli(emulator: EmulatorBackend, tmp_path: Path) -> None:
    for name in ("app", "web"):
        push_daily(emulator, name, 3)
    code, out = await run_cli(
        "plan", "--policy", keep_policy(tmp_path, 1), "--endpoint-url", emulator.endpoint_url,
        "--output", "jsonl",
    )  # fmt: skip
    assert code == 0, out
    lines = [json.loads(line) for line in out.splitlines()]
    assert sorted(line["repository"] for line in lines[:2]) == ["app", "web"]
    assert lines[-1]["type"] == "summary" and lines[-1]["total"]["expire"] == 4
