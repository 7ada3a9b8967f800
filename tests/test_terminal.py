"""What a person at a terminal sees: on real pseudo-terminals (tests/support/terminal.py)."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path

import pytest

from cleaner.emulator import seed_demo
from tests.support.backends import EmulatorBackend
from tests.support.terminal import Terminal, cleaner

COLOUR = re.compile(r"\x1b\[[0-9;]*3[12]m|\x1b\[[0-9;]*38;5;")  # red, green (or 256 colours)
LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (?:INFO|WARNING|ERROR) ")


async def test_the_demo_plan_on_a_100_column_terminal_fits_and_opens_with_the_summary() -> None:
    async with Terminal(cleaner("demo"), columns=100) as term:
        assert await term.finish(120) == 0, term.text
    assert COLOUR.search(term.raw.decode()), "a terminal gets colours"
    lines = [line.rstrip() for line in term.text.splitlines()]  # rich pads cells
    too_long = [line for line in lines if len(line) > 100]
    assert too_long == [], too_long
    start = next(i for i, line in enumerate(lines) if "plan (dry run" in line)
    plan = [line for line in lines[start + 1 :] if line.strip()]
    assert plan[0] == "Plan (dry run: nothing deleted)"
    assert plan[1].split() == [
        "REPOSITORY", "IMAGES", "KEEP", "EXPIRE", "KEPT", "RECLAIMABLE", "ERRORS",
    ]  # fmt: skip
    row = next(line for line in plan[:10] if line.lstrip().startswith("shop/api"))
    assert re.fullmatch(r"\s*shop/api\s+175\s+\d+\s+\d+\s+[\d.]+ \w?iB\s+[\d.]+ GiB\s+0", row)
    bars = plan.index("Bytes reclaimable by repository (full: reclaimable, light: kept)")
    assert all("█" in line and " of " in line for line in plan[bars + 1 : bars + 5])
    ages = plan.index("Image age since push (full: expire, light: keep)")
    buckets = ["0-1d", "1-7d", "7-30d", "30-90d", ">90d"]
    for line, bucket in zip(plan[ages + 1 : ages + 6], buckets, strict=True):
        assert line.startswith(bucket) and re.search(r"\d+ expire, \d+ keep$", line), line


def write_demo_policy(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(resources.files("cleaner").joinpath("data/demo-policy.yaml").read_text())
    return path


def demo_registry(emulator: EmulatorBackend) -> dict[str, str]:
    seed_demo(emulator.store, datetime.now(UTC))
    return {
        "AWS_ENDPOINT_URL_ECR": emulator.endpoint_url,
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "demo",
        "AWS_SECRET_ACCESS_KEY": "demo",
    }


def images(emulator: EmulatorBackend) -> int:
    return sum(len(emulator.digests(r)) for r in ("shop/api", "shop/web", "platform/base"))


async def test_a_sweep_at_a_terminal_waits_for_an_answer_and_deletes_nothing_on_no(
    emulator: EmulatorBackend, tmp_path: Path
) -> None:
    env = demo_registry(emulator)
    before = images(emulator)
    sweep = cleaner("sweep", "--policy", str(write_demo_policy(tmp_path)))
    async with Terminal(sweep, env=env) as term:
        await term.expect("[y/N]")
        question = term.text.splitlines()[-1]
        assert re.fullmatch(
            r"Delete 257 images \(15\.\d GiB\) from 4 repositories\? \[y/N\] ", question
        )
        assert "RECLAIMABLE" in term.text and "Image age since push" in term.text
        await asyncio.sleep(1.5)  # it waits: nothing happens without an answer
        assert term.process is not None and term.process.returncode is None
        assert emulator.store.calls["BatchDeleteImage"] == 0
        term.type("no\r")
        assert await term.finish() == 1
    assert "ecr-cleaner: cancelled: nothing deleted" in term.text
    assert emulator.store.calls["BatchDeleteImage"] == 0 and images(emulator) == before


async def test_a_yes_deletes_only_what_the_person_was_shown(
    emulator: EmulatorBackend, tmp_path: Path
) -> None:
    env = demo_registry(emulator)
    sweep = cleaner("sweep", "--policy", str(write_demo_policy(tmp_path)), "--details")
    async with Terminal(sweep, env=env) as term:
        await term.expect("[y/N]")
        # While the person reads, CI leaves an untagged image that the rules would expire.
        late = emulator.push("shop/web", [], datetime.now(UTC) - timedelta(days=3), seed="late")
        term.type("y\r")
        assert await term.finish() == 0, term.text
    assert emulator.store.calls["BatchDeleteImage"] > 0
    assert late in emulator.digests("shop/web")
    assert "kept: not in the plan confirmed before the sweep" in " ".join(term.text.split())


@pytest.mark.parametrize("how", ["--yes", "stdin is not a terminal"])
async def test_with_yes_or_without_a_terminal_to_answer_a_sweep_never_asks(
    emulator: EmulatorBackend, tmp_path: Path, how: str
) -> None:
    env = demo_registry(emulator)
    before = images(emulator)
    args = ["sweep", "--policy", str(write_demo_policy(tmp_path))]
    argv = cleaner(*args, "--yes") if how == "--yes" else cleaner(*args)
    async with Terminal(argv, env=env, stdin_is_terminal=how == "--yes") as term:
        assert await term.finish() == 0, term.text
    assert "[y/N]" not in term.text and images(emulator) < before


async def test_plan_shows_progress_and_its_log_lines_never_land_on_the_bar(
    emulator: EmulatorBackend, tmp_path: Path
) -> None:
    env = demo_registry(emulator)
    plan = cleaner("plan", "--policy", str(write_demo_policy(tmp_path)), "--concurrency", "1")
    async with Terminal(plan, env=env) as term:
        assert await term.finish() == 0, term.text
    raw = term.raw.decode(errors="replace")
    assert "planning" in raw and "repositories" in raw
    # Each log line starts a line of its own: after a newline, or after rich's carriage
    # return and erase (stripped here), never straight after the bar's text.
    shown = re.sub(r"\x1b\[[0-?]*[ -/]*[@-~]", "", raw)
    starts = [m.start() for m in LOG_LINE.finditer(shown)]
    assert len(starts) >= 5, shown
    assert all(shown[i - 1] in "\r\n" for i in starts if i), shown
    # The library chatter is quiet at the default level.
    assert "botocore" not in shown and "Found credentials" not in shown


async def test_json_streamed_to_the_terminal_draws_no_bar_across_it(
    emulator: EmulatorBackend, tmp_path: Path
) -> None:
    """The report and the bar would share one screen: the bar stays off, the JSON whole."""
    env = demo_registry(emulator) | {"CLEANER_LOG_LEVEL": "ERROR"}
    plan = cleaner("plan", "--policy", str(write_demo_policy(tmp_path)), "--output", "json")
    async with Terminal(plan, env=env, columns=400) as term:
        assert await term.finish() == 0, term.text
    assert "planning" not in term.text
    doc = json.loads(term.text)
    assert doc["summary"]["total"]["repositories"] == len(doc["repositories"]) > 0
