"""The report for people: summary first, then two pictures, then the per-image decisions.

Drawn by rich, so tables fit the console's width (the terminal's, else `COLUMNS`, else 80)
and wrap the REASON column rather than the row; keep and expire are coloured on a terminal,
and nothing but text is written when the output is piped or `NO_COLOR` is set (rich's
rules: https://rich.readthedocs.io/en/stable/console.html#terminal-detection). Every
string from a registry or a policy goes in as `Text`, never as markup, so a tag such as
`[red]` prints as itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import TextIO, cast

from rich import box
from rich.console import Console, ConsoleOptions, RenderableType
from rich.table import Table
from rich.text import Text

from cleaner.planning.model import Decision, RepositoryReport, RunReport, Verdict
from cleaner.planning.units import format_bytes, format_duration
from cleaner.reports.figures import (
    AGE_BUCKETS,
    Counts,
    RunFigures,
    Totals,
    reclaim_bars,
    shown_bytes,
    target_name,
)

DETAIL_LIMIT = 100
"""Runs with at most this many images list every decision by default: about two screens,
still read row by row. Beyond it the summary and the pictures are what a person reads, and
the rows are behind `--details` (or in `--output html`, which filters and sorts them)."""
TOP_BARS = 10
NAME_WIDTH = 40
STYLE = {Verdict.KEEP: "green", Verdict.EXPIRE: "red"}
FULL, LIGHT = "█", "░"
ASCII_FULL, ASCII_LIGHT = "#", "."


def text_console(out: TextIO, width: int | None = None) -> Console:
    """A console on `out` that reads nothing as markup, emoji or a number to highlight.

    Piped, the lines lose the spaces rich pads table cells with, so files and CI logs hold
    no trailing blanks."""
    file = out if out.isatty() else cast(TextIO, _Trimmed(out))
    return Console(file=file, width=width, markup=False, emoji=False, highlight=False)


class _Trimmed:
    """Writes whole lines to `out`, each without trailing spaces (what rich calls on a file:
    write, flush, isatty, and encoding to choose between block characters and ASCII)."""

    def __init__(self, out: TextIO) -> None:
        self.out, self.pending = out, ""
        self.encoding = getattr(out, "encoding", None) or "utf-8"

    def write(self, text: str) -> int:
        *lines, self.pending = (self.pending + text).split("\n")
        for line in lines:
            self.out.write(line.rstrip(" ") + "\n")
        return len(text)

    def flush(self) -> None:
        if self.pending:
            self.out.write(self.pending.rstrip(" "))
            self.pending = ""
        self.out.flush()

    def isatty(self) -> bool:
        return False


def write_text(
    report: RunReport,
    now: datetime,
    console: Console,
    *,
    details: bool | None = None,
    max_rows: int | None = None,
) -> None:
    """Summary, pictures, then per-image tables: every one with `details`, none without,
    and by default only for small runs (DETAIL_LIMIT); `max_rows` shortens each table."""
    writer = TextWriter(console, dry_run=report.dry_run, now=now, details=details)
    for repo in report.repositories:
        writer.repository(repo)
    writer.finish(report, max_rows=max_rows)


class TextWriter:
    """The text report, fed one repository at a time. It opens with the summary, so it is
    printed at the end; meanwhile it holds the counters, the repositories with a problem
    (without their plans), and the plans only while their tables will be shown."""

    def __init__(
        self, console: Console, *, dry_run: bool, now: datetime, details: bool | None = None
    ) -> None:
        self.console, self.now, self.details = console, now, details
        self.figures = RunFigures(dry_run, now)
        self.tables: list[RepositoryReport] | None = [] if details is not False else None
        self.problems: list[RepositoryReport] = []

    def repository(self, report: RepositoryReport) -> None:
        self.figures.add(report)
        if report.error or report.failed:
            self.problems.append(replace(report, plan=None))
        if self.tables is not None:
            self.tables.append(report)
            if self.details is None and self.figures.totals.images > DETAIL_LIMIT:
                self.tables = None  # a large run: the summary is what a person reads

    def finish(self, report: RunReport, *, max_rows: int | None = None) -> None:
        console, figures = self.console, self.figures
        figures.failed_targets = report.failed_targets
        by_target = figures.by_target
        for part in summary_parts(figures):
            console.print(part)
        if self.tables is not None:
            for repo in _in_order(self.tables):
                console.print(repository_table(repo, self.now, max_rows, by_target=by_target))
        elif figures.totals.images:
            console.print(
                Text(
                    f"{figures.totals.images} per-image decisions not shown: --details lists "
                    "them; --output html writes a page that filters and sorts them.",
                    style="dim",
                )
            )
        for line in problem_lines(_in_order(self.problems), by_target=by_target):
            console.print(line)
        for failure in report.failed_targets:
            console.print(Text(f"target {failure.target}: ERROR {failure.error}", style="bold red"))
        failed = len(report.failed_targets)
        console.print(Text(outcome(figures.totals, figures.dry_run, failed), style="bold"))


def _in_order(repositories: Iterable[RepositoryReport]) -> list[RepositoryReport]:
    """By target, then by name: a run over several accounts and regions reads by target."""
    return sorted(repositories, key=lambda r: (r.account, r.region, r.repository))


def summary_parts(figures: RunFigures) -> list[RenderableType]:
    """The summary table and, when there are images, the two pictures."""
    parts: list[RenderableType] = [summary_table(figures)]
    if figures.totals.images:
        # The table ends with a blank line of its own (its box's bottom edge).
        parts += [reclaim_chart(figures), Text(""), age_chart(figures), Text("")]
    return parts


# --- the summary table -----------------------------------------------------------------------


def summary_table(figures: RunFigures) -> Table:
    dry_run = figures.dry_run
    title = "Plan (dry run: nothing deleted)" if dry_run else "Sweep"
    # Collapsed padding: eight columns fit 80 characters with a 15-character name.
    table = Table(
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    grouped = figures.by_target
    # Names keep their width (up to NAME_WIDTH) on a narrow console: the total's label
    # wraps at its spaces instead of a repository name breaking mid-word.
    longest = max((len(row.repository) for row in figures.rows), default=0)
    indent = 2 if grouped else 0
    width = min(NAME_WIDTH, max(10, longest + indent))
    table.add_column("REPOSITORY", overflow="fold", ratio=1, min_width=width)
    for name in ("IMAGES", "KEEP", "EXPIRE", *(() if dry_run else ("DELETED",))):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("KEPT", justify="right", no_wrap=True)
    table.add_column("RECLAIMABLE" if dry_run else "RECLAIMED", justify="right", no_wrap=True)
    table.add_column("ERRORS", justify="right", no_wrap=True)
    previous: str | None = None
    for row in figures.ordered:
        if grouped and row.target != previous:  # a run over several targets: one section each
            if previous is not None:
                table.add_section()
            table.add_row(Text(f"target {row.target or 'registry'}", style="bold"))
        previous = row.target
        table.add_row(*_cells(("  " if grouped else "") + row.repository, row, dry_run))
    table.add_section()
    totals = figures.totals
    label = f"total ({_count(totals.repositories, 'repository')})"
    table.add_row(*_cells(label, totals, dry_run), style="bold")
    return table


def _cells(label: str, counts: Counts, dry_run: bool) -> list[Text]:
    return [
        Text(label),
        Text(str(counts.images)),
        Text(str(counts.keep), style=STYLE[Verdict.KEEP]),
        Text(str(counts.expire), style=STYLE[Verdict.EXPIRE]),
        *(() if dry_run else (Text(str(counts.deleted)),)),
        Text(format_bytes(counts.kept_bytes)),
        Text(format_bytes(shown_bytes(counts, dry_run))),
        Text(str(counts.errors), style="bold red" if counts.errors else ""),
    ]


def outcome(totals: Totals, dry_run: bool, failed_targets: int = 0) -> str:
    """The last line: the run in one sentence, for logs and for grep."""
    text = (
        f"{_count(totals.repositories, 'repository')}, {_count(totals.images, 'image')}, "
        f"{totals.expire} to expire ({format_bytes(totals.expire_bytes)})"
    )
    if dry_run:
        text += "; dry run: nothing deleted"
    else:
        text = (
            f"{text}, {totals.deleted} deleted ({format_bytes(totals.deleted_bytes)}), "
            f"{totals.failed} failed, {_count(totals.repository_errors, 'repository error')}"
        )
    if failed_targets:
        text += f"; {_count(failed_targets, 'target')} could not be swept"
    return text


def _count(number: int, noun: str) -> str:
    if number == 1:
        return f"1 {noun}"
    return f"{number} {noun[:-1]}ies" if noun.endswith("y") else f"{number} {noun}s"


# --- pictures --------------------------------------------------------------------------------


def reclaim_chart(figures: RunFigures) -> RenderableType:
    """Bytes reclaimable (reclaimed) per repository, the top TOP_BARS and then the others,
    each bar beside the bytes its repository keeps."""
    verb = "reclaimable" if figures.dry_run else "reclaimed"
    bars = reclaim_bars(figures, TOP_BARS)
    heading = f"Bytes {verb} by repository (full: {verb}, light: kept)"
    if not bars:
        return Text(f"{heading}: nothing to reclaim", style="bold")
    labels = [bar.label for bar in bars]
    values = [f"{format_bytes(b.value)} of {format_bytes(b.value + b.rest)}" for b in bars]
    scale = max(bar.value + bar.rest for bar in bars)
    rows = [
        (label, [(bar.value, STYLE[Verdict.EXPIRE], True), (bar.rest, "green", False)], value)
        for label, bar, value in zip(labels, bars, values, strict=True)
    ]
    return _Chart(heading, rows, scale)


def age_chart(figures: RunFigures) -> RenderableType:
    """Images by time since push, expiring against kept, per age bucket."""
    ages = figures.ages
    expire, keep = ages.counts[Verdict.EXPIRE], ages.counts[Verdict.KEEP]
    scale = max(e + k for e, k in zip(expire, keep, strict=True))
    rows = [
        (
            label,
            [(expire[i], STYLE[Verdict.EXPIRE], True), (keep[i], "green", False)],
            f"{expire[i]} expire, {keep[i]} keep",
        )
        for i, (label, _) in enumerate(AGE_BUCKETS)
    ]
    return _Chart("Image age since push (full: expire, light: keep)", rows, scale)


Segment = tuple[int, str, bool]
"""A part of a bar: its value, its style, and whether it is drawn full or light."""


class _Chart:
    """Labelled horizontal bars that take whatever width the console has."""

    def __init__(
        self, heading: str, rows: Sequence[tuple[str, list[Segment], str]], scale: int
    ) -> None:
        self.heading, self.rows, self.scale = heading, rows, max(scale, 1)

    def __rich_console__(
        self, console: Console, options: ConsoleOptions
    ) -> Iterable[RenderableType]:
        # ASCII when the console's encoding cannot write block characters.
        blocks = (ASCII_FULL, ASCII_LIGHT) if options.ascii_only else (FULL, LIGHT)
        width = options.max_width
        label_width = min(max(len(label) for label, _, _ in self.rows), max(8, width // 4))
        value_width = max(len(value) for _, _, value in self.rows)
        bar_width = max(4, width - label_width - value_width - 2)
        yield Text(self.heading, style="bold")
        grid = Table.grid(padding=(0, 1, 0, 0))
        grid.add_column(no_wrap=True, overflow="ellipsis", width=label_width)
        grid.add_column(no_wrap=True, width=bar_width - 1)
        grid.add_column(no_wrap=True, justify="right", width=value_width)
        for label, segments, value in self.rows:
            grid.add_row(Text(label), self._bar(segments, bar_width - 1, blocks), Text(value))
        yield grid

    def _bar(self, segments: list[Segment], width: int, blocks: tuple[str, str]) -> Text:
        bar = Text()
        drawn, total = 0, 0
        for value, style, full in segments:
            total += value
            end = round(total / self.scale * width)
            cells = max(end - drawn, 1 if value else 0)  # anything at all shows
            bar.append(blocks[0 if full else 1] * cells, style=style)
            drawn += cells
        return bar


# --- per-image decisions ---------------------------------------------------------------------


def repository_table(
    repo: RepositoryReport, now: datetime, max_rows: int | None, *, by_target: bool = False
) -> Table:
    plan = repo.plan
    decisions: Sequence[Decision] = plan.decisions if plan else ()
    title = Text(_name(repo, by_target), style="bold")
    if plan is None:
        title.append(": not planned (the error is below)")
    else:
        keep = sum(1 for d in decisions if d.verdict is Verdict.KEEP)
        title.append(f": {len(decisions)} images, keep {keep}, expire {len(decisions) - keep}")
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("VERDICT", no_wrap=True)
    table.add_column("DIGEST", no_wrap=True)
    table.add_column("TAGS", overflow="ellipsis", no_wrap=True, max_width=22)
    table.add_column("AGE", no_wrap=True, justify="right")
    table.add_column("SIZE", no_wrap=True, justify="right")
    table.add_column("REASON", overflow="fold", ratio=1, min_width=16)
    shown = decisions if max_rows is None else decisions[:max_rows]
    for decision in shown:
        table.add_row(*_decision_cells(decision, now))
    if len(shown) < len(decisions):
        table.caption = f"... {len(decisions) - len(shown)} more"
        table.caption_justify = "left"
    return table


def _decision_cells(decision: Decision, now: datetime) -> list[Text]:
    image = decision.image
    return [
        Text(decision.verdict.value, style=STYLE[decision.verdict]),
        Text(image.digest.removeprefix("sha256:")[:12]),
        Text(",".join(image.tags) or "<untagged>", style="" if image.tags else "dim"),
        Text(format_duration(now - image.pushed_at)),
        Text(format_bytes(image.size)),
        Text(decision.reason),
    ]


def problem_lines(
    repositories: Iterable[RepositoryReport], *, by_target: bool = False
) -> list[Text]:
    """Every repository error and every image that could not be deleted: always shown."""
    lines = []
    for repo in repositories:
        name = _name(repo, by_target)
        if repo.error:
            lines.append(Text(f"{name}: ERROR {repo.error}", style="bold red"))
        for failure in repo.failed:
            digest = failure.digest.removeprefix("sha256:")[:12]
            message = f"{name}: not deleted {digest}: {failure.code} "
            lines.append(Text(message + failure.message, style="red"))
    return lines


def _name(repo: RepositoryReport, by_target: bool) -> str:
    """The repository, after its target when the run had several."""
    target = target_name(repo.account, repo.region)
    return f"{target} {repo.repository}" if by_target and target else repo.repository
