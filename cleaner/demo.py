"""`ecr-cleaner demo`: the real engine against a seeded local emulator, no AWS account needed."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import TextIO

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from cleaner import wiring
from cleaner.emulator import RegistryStore, running, seed_demo
from cleaner.engine import Engine, SweepRequest
from cleaner.planning.documents import decode
from cleaner.planning.policy_file import PolicyFile, parse_policy_file
from cleaner.planning.units import format_bytes
from cleaner.ports import Registry
from cleaner.reports.figures import run_figures
from cleaner.reports.text import outcome, problem_lines, summary_table, text_console, write_text
from cleaner.settings import EngineSettings

log = logging.getLogger(__name__)
DEMO_ROWS = 6


@dataclass(frozen=True, slots=True)
class Census:
    images: int
    size: int


DEMO_KEYS = wiring.Credentials("demo", "demo")  # the emulator accepts any key


async def run_demo(out: TextIO, *, concurrency: int = 10) -> int:
    now = datetime.now(UTC)
    store = RegistryStore()
    seed_demo(store, now)
    text = resources.files("cleaner").joinpath("data/demo-policy.yaml").read_text()
    policy = parse_policy_file(decode(text, "demo-policy.yaml"), "demo-policy.yaml")
    console = text_console(out)
    async with running(store) as url:
        settings = EngineSettings(
            policy_path="demo-policy.yaml", concurrency=concurrency, regions=(store.region,),
            endpoint_url=url,
        )  # fmt: skip
        async with wiring.open_engine(settings, policy, "sweep", credentials=DEMO_KEYS) as engine:
            console.print(Text(f"Local ECR emulator at {url}; policy:\n"))
            console.print(Text(text))
            report = await _plan_then_sweep(engine, policy, now, concurrency, console)
    console.print(compare(*report[:2]))
    return 0 if report[2] else 1


async def _plan_then_sweep(
    engine: Engine, policy: PolicyFile, now: datetime, concurrency: int, console: Console
) -> tuple[dict[str, Census], dict[str, Census], bool]:
    before = await census(engine.registry)
    plan = await engine.run(SweepRequest(policy=policy, now=now, concurrency=concurrency))
    console.rule(f"plan (dry run; the first {DEMO_ROWS} decisions of each repository)")
    write_text(plan, now, console, details=True, max_rows=DEMO_ROWS)
    request = SweepRequest(policy=policy, now=now, apply=True, concurrency=concurrency)
    report = await engine.run(request)
    console.rule("sweep")
    figures = run_figures(report.dry_run, now, report.repositories)
    console.print(summary_table(figures))
    for line in problem_lines(report.repositories):
        console.print(line)
    console.print(Text(outcome(figures.totals, report.dry_run), style="bold"))
    console.print()
    return before, await census(engine.registry), report.ok


async def census(registry: Registry) -> dict[str, Census]:
    result = {}
    for repo in await registry.repositories():
        images = await registry.images(repo)
        result[repo.name] = Census(len(images), sum(i.size for i in images))
    return result


def compare(before: dict[str, Census], after: dict[str, Census]) -> Table:
    """The registry before and after the sweep, as the emulator itself lists it."""
    table = Table(
        title="The registry before and after",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        collapse_padding=True,
    )
    table.add_column("REPOSITORY", overflow="fold", min_width=max(map(len, before), default=10))
    for name in ("IMAGES BEFORE", "AFTER", "SIZE BEFORE", "AFTER", "RECLAIMED"):
        table.add_column(name, justify="right", no_wrap=True)
    for name in sorted(before):
        table.add_row(*_compared(name, before[name], after.get(name, Census(0, 0))))
    table.add_section()
    total_b = Census(sum(c.images for c in before.values()), sum(c.size for c in before.values()))
    total_a = Census(sum(c.images for c in after.values()), sum(c.size for c in after.values()))
    table.add_row(*_compared("total", total_b, total_a), style="bold")
    return table


def _compared(name: str, before: Census, after: Census) -> tuple[Text, ...]:
    cells = (
        name,
        str(before.images),
        str(after.images),
        format_bytes(before.size),
        format_bytes(after.size),
        format_bytes(before.size - after.size),
    )
    return tuple(Text(cell) for cell in cells)
