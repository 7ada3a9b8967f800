"""The report as one self-contained HTML page, for a pull request or a CI artifact.

The summary, the two charts (inline SVG) and a table of every decision that filters by
repository, verdict and reason and sorts by age and size. Nothing is fetched: the style and
the script are inline, and the page's Content-Security-Policy (`default-src 'none'`, the
script and style allowed by their SHA-256 only) stops the browser from loading anything
else, so even a registry string that slipped through escaping could not run or call out.

Written in one pass over the repositories: each one's decisions go out as a JSON block as
soon as it comes, and the summary, whose figures are sums over them, is written last and
shown first (CSS `order`), so the page costs memory only for the repository being written.
The table draws 200 rows at a time; the page is meant for runs of up to 100,000 images
(bench figures are in the README), and a larger run logs a warning: `--output jsonl` is
the better tool there.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from collections.abc import Callable
from datetime import datetime
from functools import cache
from html import escape
from importlib import resources
from typing import TextIO

from cleaner.planning.model import RepositoryReport, RunReport, Verdict, iso_utc
from cleaner.planning.units import format_bytes
from cleaner.reports.figures import (
    AGE_BUCKETS,
    Counts,
    RunFigures,
    reclaim_bars,
    run_figures,
    shown_bytes,
    target_name,
)
from cleaner.reports.text import outcome

log = logging.getLogger(__name__)

TOP_BARS = 10
EXPIRE, KEEP, KEPT = "#c0392b", "#27ae60", "#a9dfbf"


@cache
def _asset(name: str) -> str:
    return resources.files("cleaner.reports").joinpath(f"assets/{name}").read_text("utf-8")


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


PAGE_IMAGES = 100_000
"""The most decisions the page is meant for: at 100,000 it opens in well under a second in
Chromium (bench/html_report.py); beyond, a browser spends seconds and memory on rows nobody
pages through, and `--output jsonl` suits the reader better."""


def render_html(report: RunReport, now: datetime) -> str:
    parts: list[str] = []
    write_report_html(report, now, parts)
    return "".join(parts)


def write_report_html(report: RunReport, now: datetime, out: TextIO | list[str]) -> None:
    figures = run_figures(report.dry_run, now, report.repositories, report.failed_targets)
    write = out.append if isinstance(out, list) else out.write
    writer = HtmlWriter(write, dry_run=report.dry_run, now=now, by_target=figures.by_target)
    for repo in report.repositories:
        writer.repository(repo)
    writer.finish(report)


class HtmlWriter:
    """The page, written piece by piece: head, one JSON block per repository as it finishes,
    then the summary. With `by_target` (a run over several accounts and regions), a
    repository is named after its target."""

    def __init__(
        self, write: Callable[[str], object], *, dry_run: bool, now: datetime, by_target: bool
    ) -> None:
        self.write, self.by_target = write, by_target
        self.figures = RunFigures(dry_run, now)
        self.kind = "Plan (dry run: nothing deleted)" if dry_run else "Sweep"
        style, script = _asset("report.css"), _asset("report.js")
        policy = f"default-src 'none'; style-src {_sha256(style)}; script-src {_sha256(script)}"
        write(
            "<!DOCTYPE html>\n<html lang=en>\n<head>\n<meta charset=utf-8>\n"
            f'<meta http-equiv="Content-Security-Policy" content="{policy}">\n'
            '<meta name=viewport content="width=device-width, initial-scale=1">\n'
            f"<title>ecr-cleaner: {self.kind}</title>\n<style>{style}</style>\n</head>\n"
            f"<body data-now={int(now.timestamp())}>\n"
        )
        write(_DECISIONS_SECTION)

    def repository(self, report: RepositoryReport) -> None:
        before = self.figures.totals.images
        self.figures.add(report)
        if before <= PAGE_IMAGES < self.figures.totals.images:
            log.warning(
                "the HTML report passes %d decisions, more than the page is meant for; "
                "--output jsonl suits a run this size",
                PAGE_IMAGES,
            )
        self.write(_repository_block(report, self.by_target))

    def finish(self, report: RunReport) -> None:
        self.figures.failed_targets = report.failed_targets
        self.write(_summary_section(self.figures, self.kind, self.by_target))
        self.write(f"<script>{_asset('report.js')}</script>\n</body>\n</html>\n")


def _json(value: object) -> str:
    """JSON safe inside <script>: no `<`, `>` or `&` can end the block or start a tag."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _repository_block(repo: RepositoryReport, by_target: bool) -> str:
    decisions = repo.plan.decisions if repo.plan else ()
    rows = [
        [
            d.verdict.value,
            d.image.digest,
            list(d.image.tags),
            int(d.image.pushed_at.timestamp()),
            d.image.size,
            d.reason,
        ]
        for d in decisions
    ]
    target = target_name(repo.account, repo.region)
    name = f"{target} {repo.repository}" if by_target and target else repo.repository
    data = _json({"repository": name, "decisions": rows})
    return f'<script type="application/json" class="repository">{data}</script>\n'


_DECISIONS_SECTION = """<section id=decisions-section>
<h2>Every decision</h2>
<div class=controls>
<label>Repository <select id=repository><option value="">all</option></select></label>
<label>Verdict <select id=verdict><option value="">all</option>
<option value=expire>expire</option><option value=keep>keep</option></select></label>
<label>Reason contains <input id=reason type=search placeholder="e.g. rule 2, signature"></label>
</div>
<p id=status>The table of decisions needs JavaScript; the summary and charts do not.</p>
<table id=decisions>
<colgroup><col class=repo><col class=verdict><col class=digest><col class=tags><col class=age>
<col class=size><col class=reason></colgroup>
<thead><tr><th>Repository</th><th>Verdict</th><th>Digest</th><th>Tags</th>
<th class=n data-sort=age aria-sort=none><button type=button>Age</button></th>
<th class=n data-sort=size aria-sort=none><button type=button>Size</button></th>
<th>Reason</th></tr></thead>
<tbody id=rows></tbody>
</table>
<div class=pager><button type=button id=previous>Previous</button><span id=page></span>
<button type=button id=next>Next</button></div>
</section>
"""


def _summary_section(figures: RunFigures, kind: str, by_target: bool = False) -> str:
    totals = figures.totals
    return (
        "<section id=summary>\n"
        f"<h1>ecr-cleaner: {escape(kind)}</h1>\n"
        f"<p class=meta>{escape(outcome(totals, figures.dry_run))}. "
        f"Planned at {escape(iso_utc(figures.now.replace(microsecond=0)))}.</p>\n"
        f"{_summary_table(figures, by_target or figures.by_target)}"
        "<div class=charts>\n"
        f"{_bars_svg(figures)}{_histogram_svg(figures)}"
        "</div>\n</section>\n"
    )


def _summary_table(figures: RunFigures, by_target: bool) -> str:
    dry_run = figures.dry_run
    bytes_head = "Reclaimable" if dry_run else "Reclaimed"
    deleted_head = "" if dry_run else "<th class=n>Deleted</th>"
    head = (
        "<table id=summary-table><thead><tr><th>Repository</th><th class=n>Images</th>"
        f"<th class=n>Keep</th><th class=n>Expire</th>{deleted_head}<th class=n>Kept</th>"
        f"<th class=n>{bytes_head}</th><th class=n>Errors</th></tr></thead>\n<tbody>\n"
    )
    rows = []
    for row in figures.ordered:
        name = f"{row.target} {row.repository}" if by_target else row.repository
        rows.append(_row(escape(name), row, dry_run, title=escape(row.error or "")))
    totals = figures.totals
    total = _row(f"total ({totals.repositories})", totals, dry_run, css="total")
    return head + "".join(rows) + total + "</tbody></table>\n"


def _row(name: str, counts: Counts, dry_run: bool, *, title: str = "", css: str = "") -> str:
    deleted_cell = "" if dry_run else f"<td class=n>{counts.deleted}</td>"
    errors = counts.errors
    error_cell = f'<td class="n{" err" if errors else ""}" title="{title}">{errors}</td>'
    return (
        f'<tr class="{css}"><td>{name}</td><td class=n>{counts.images}</td>'
        f"<td class='n keep'>{counts.keep}</td><td class='n expire'>{counts.expire}</td>"
        f"{deleted_cell}<td class=n>{format_bytes(counts.kept_bytes)}</td>"
        f"<td class=n>{format_bytes(shown_bytes(counts, dry_run))}</td>{error_cell}</tr>\n"
    )


def _short(text: str, limit: int = 28) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _bars_svg(figures: RunFigures) -> str:
    verb = "reclaimable" if figures.dry_run else "reclaimed"
    bars = reclaim_bars(figures, TOP_BARS)
    caption = f"Bytes {verb} by repository (kept beside it, lighter)"
    if not bars:
        return f"<figure><figcaption>{caption}</figcaption><p>Nothing to reclaim.</p></figure>\n"
    label_w, bar_w, value_w, row_h = 190, 330, 150, 22
    width, height = label_w + bar_w + value_w, row_h * len(bars) + 4
    scale = max(bar.value + bar.rest for bar in bars) or 1
    shapes = []
    for i, bar in enumerate(bars):
        y = i * row_h + 2
        expire_w = bar.value / scale * bar_w
        kept_w = bar.rest / scale * bar_w
        value = f"{format_bytes(bar.value)} of {format_bytes(bar.value + bar.rest)}"
        shapes.append(
            f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end">'
            f"<title>{escape(bar.label)}</title>{escape(_short(bar.label))}</text>"
            f'<rect x="{label_w}" y="{y + 3}" width="{expire_w:.1f}" height="16" '
            f'fill="{EXPIRE}"/>'
            f'<rect x="{label_w + expire_w:.1f}" y="{y + 3}" width="{kept_w:.1f}" height="16" '
            f'fill="{KEPT}"/>'
            f'<text x="{width - 4}" y="{y + 15}" text-anchor="end">{value}</text>'
        )
    return (
        f"<figure><figcaption>{caption}</figcaption>"
        f'<svg id=bars role=img width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">'
        f"{''.join(shapes)}</svg></figure>\n"
    )


def _histogram_svg(figures: RunFigures) -> str:
    ages = figures.ages
    expire, keep = ages.counts[Verdict.EXPIRE], ages.counts[Verdict.KEEP]
    column_w, plot_h, top, bottom = 70, 180, 34, 22
    width, height = column_w * len(AGE_BUCKETS) + 20, top + plot_h + bottom
    scale = max((e + k for e, k in zip(expire, keep, strict=True)), default=0) or 1
    shapes = [
        f'<rect x="10" y="4" width="12" height="12" fill="{EXPIRE}"/>'
        '<text x="26" y="14">expire</text>'
        f'<rect x="86" y="4" width="12" height="12" fill="{KEEP}"/>'
        '<text x="102" y="14">keep</text>'
    ]
    for i, (label, _) in enumerate(AGE_BUCKETS):
        x = 10 + i * column_w + 10
        expire_h = expire[i] / scale * plot_h
        keep_h = keep[i] / scale * plot_h
        base = top + plot_h
        shapes.append(
            f'<rect x="{x}" y="{base - expire_h:.1f}" width="{column_w - 20}" '
            f'height="{expire_h:.1f}" fill="{EXPIRE}"><title>{expire[i]} expire</title></rect>'
            f'<rect x="{x}" y="{base - expire_h - keep_h:.1f}" width="{column_w - 20}" '
            f'height="{keep_h:.1f}" fill="{KEEP}"><title>{keep[i]} keep</title></rect>'
            f'<text x="{x + (column_w - 20) / 2}" y="{base - expire_h - keep_h - 4:.1f}" '
            f'text-anchor="middle">{expire[i]}/{keep[i]}</text>'
            f'<text x="{x + (column_w - 20) / 2}" y="{base + 16}" '
            f'text-anchor="middle">{escape(label)}</text>'
        )
    return (
        "<figure><figcaption>Image age since push: expire / keep</figcaption>"
        f'<svg id=ages role=img width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">'
        f"{''.join(shapes)}</svg></figure>\n"
    )
