"""`--output html`: one self-contained page, checked as text and in a real headless Chromium."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from cleaner.planning.model import Decision, Image, Plan, RepositoryReport, RunReport, Verdict
from cleaner.reports.html import render_html
from tests.support.chromium import Page, chromium, chromium_binary, png_pixels
from tests.support.reports import NOW, synthetic_report

HOSTILE_TAG = "</script><script>document.title='owned'</script>"


def hostile_report() -> RunReport:
    image = Image("sha256:" + "ab" * 32, (HOSTILE_TAG, "<b>x</b>"), NOW - timedelta(days=9), 7)
    reason = "kept: <img src=x onerror=alert(1)> & more"
    plan = Plan("team/app", (Decision(image, Verdict.KEEP, reason),))
    return RunReport(
        True, (*synthetic_report(2, 20).repositories, RepositoryReport("team/app", plan))
    )


def test_the_page_is_self_contained_and_its_policy_allows_only_its_own_script_and_style() -> None:
    page = render_html(hostile_report(), NOW)
    # Nothing to fetch: no src or href, no URL but the SVG namespace name (never fetched).
    markup = re.sub(r'<script type="application/json".*?</script>', "", page, flags=re.DOTALL)
    assert not re.search(r"\s(?:src|href)\s*=", markup)
    assert set(re.findall(r"https?://[^\s\"'<>]+", page)) == {"http://www.w3.org/2000/svg"}
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page)
    assert policy, "a Content-Security-Policy"
    directives = dict(d.strip().split(" ", 1) for d in policy[1].split(";"))
    assert directives["default-src"] == "'none'"
    (style,) = re.findall(r"<style>(.*?)</style>", page, re.DOTALL)
    scripts = re.findall(r"<script>(.*?)</script>", page, re.DOTALL)
    assert len(scripts) == 1

    def digest(text: str) -> str:
        return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"

    assert directives["style-src"] == digest(style)
    assert directives["script-src"] == digest(scripts[0])
    # A registry string cannot end a block or open a tag.
    assert HOSTILE_TAG not in page and "<img src=x" not in page and "<b>x</b>" not in page


async def load(page: Page, path: Path) -> dict[str, Any]:
    await page.send("Page.enable")
    await page.send("Network.enable")
    await page.send("Page.navigate", url=path.as_uri())
    await page.event("Page.loadEventFired")
    return {
        "requests": [
            e["params"]["request"]["url"]
            for e in page.events
            if e["method"] == "Network.requestWillBeSent"
        ],
        "status": await page.evaluate("document.getElementById('status').textContent"),
        "rows": await page.evaluate("document.querySelectorAll('#rows tr').length"),
    }


async def visible_rows(page: Page) -> list[list[str]]:
    return await page.evaluate(  # type: ignore[no-any-return]
        "[...document.querySelectorAll('#rows tr')].map(tr =>"
        " [...tr.cells].map(td => td.textContent))"
    )


async def test_20000_decisions_load_filter_sort_and_show_in_chromium(tmp_path: Path) -> None:
    report = synthetic_report(40, 500)
    path = tmp_path / "plan.html"
    path.write_text(render_html(report, NOW), encoding="utf-8")
    target = report.repositories[7]
    assert target.plan is not None
    async with chromium(1280, 1000) as page:
        assert blank(await page.screenshot()), "the check below can tell a blank page"
        loaded = await load(page, path)
        # Only the file itself: the page fetched nothing.
        assert loaded["requests"] == [path.as_uri()], loaded["requests"]
        assert loaded["status"] == "20000 of 20000 decisions match; showing 1-200."
        assert loaded["rows"] == 200
        assert (
            await page.evaluate("document.title") == "ecr-cleaner: Plan (dry run: nothing deleted)"
        )

        # Filter to one repository, as a person would: pick it in the list.
        await page.evaluate(
            "(() => { const s = document.getElementById('repository');"
            f" s.value = [...s.options].find(o => o.text === {target.repository!r}).value;"
            " s.dispatchEvent(new Event('change')); })()"
        )
        rows = await visible_rows(page)
        assert len(rows) == 200 and {row[0] for row in rows} == {target.repository}
        status = await page.evaluate("document.getElementById('status').textContent")
        assert status == "500 of 20000 decisions match; showing 1-200."

        # Then only what expires, and type into the reason filter (real key input).
        await page.evaluate(
            "(() => { const s = document.getElementById('verdict'); s.value = 'expire';"
            " s.dispatchEvent(new Event('change')); })()"
        )
        await page.evaluate("document.getElementById('reason').focus()")
        await page.send("Input.insertText", text="untagged leftovers")
        expected = [
            d
            for d in target.plan.decisions
            if d.verdict is Verdict.EXPIRE and "untagged leftovers" in d.reason.lower()
        ]
        rows = await visible_rows(page)
        assert 0 < len(rows) == min(200, len(expected))
        assert all(r[1] == "expire" and "untagged leftovers" in r[6] for r in rows)

        # Sort by size, largest first (a second click turns the order round).
        await page.evaluate("document.getElementById('reason').value = ''")
        await page.evaluate("document.getElementById('reason').dispatchEvent(new Event('input'))")
        for _ in range(2):
            await page.evaluate("document.querySelector('th[data-sort=size] button').click()")
        sizes = await page.evaluate(
            "[...document.querySelectorAll('#rows tr')].map(tr => tr.cells[5].textContent)"
        )
        largest = max(d.image.size for d in target.plan.expire)
        assert sizes[0] == f"{largest / 2**20:.1f} MiB"
        order = await page.evaluate("document.querySelector('th[data-sort=size]').ariaSort")
        assert order == "descending"

        shot = await page.screenshot()
    assert png_pixels(shot)[:2] == (1280, 1000)
    assert not blank(shot), "the screenshot is blank"


def blank(png: bytes) -> bool:
    """Fewer than 20 colours, or 97 % one colour, in a sample of every 8th pixel."""
    _, _, channels, rows = png_pixels(png)
    step = channels * 8
    samples = [row[i : i + 3] for row in rows[::8] for i in range(0, len(row), step)]
    commonest = max(samples.count(colour) for colour in set(samples))
    return len(set(samples)) < 20 or commonest / len(samples) > 0.97


async def test_a_hostile_string_stays_text_in_the_browser(tmp_path: Path) -> None:
    path = tmp_path / "plan.html"
    path.write_text(render_html(hostile_report(), NOW), encoding="utf-8")
    async with chromium(1000, 800) as page:
        await load(page, path)
        await page.evaluate(
            "(() => { const s = document.getElementById('repository');"
            " s.value = [...s.options].find(o => o.text === 'team/app').value;"
            " s.dispatchEvent(new Event('change')); })()"
        )
        rows = await visible_rows(page)
        assert await page.evaluate("document.title") != "owned"
    assert rows[0][3] == f"{HOSTILE_TAG}, <b>x</b>"
    assert rows[0][6] == "kept: <img src=x onerror=alert(1)> & more"


def test_without_chromium_the_browser_tests_fail_naming_the_package(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH with no browser on it
    with pytest.raises(pytest.fail.Exception, match="apt-get install chromium"):
        chromium_binary()


def test_the_load_time_benchmark_runs_and_reports_its_figures() -> None:
    # Timings are for bench/html_report.py to print, not for the suite to assert.
    done = subprocess.run(
        [sys.executable, "bench/html_report.py", "--images", "400", "--runs", "1"],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    assert figures["images"] == 400 and figures["load_ms"] > 0 and figures["filter_ms"] >= 0
    assert set(figures) >= {"render_s", "size_mb", "drawn_ms"}
