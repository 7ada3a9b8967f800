"""`ecr-cleaner demo`: the real engine against a seeded local emulator, no AWS account needed."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import TextIO

from cleaner import wiring
from cleaner.emulator import RegistryStore, running, seed_demo
from cleaner.engine import Engine, SweepRequest
from cleaner.output import render_text
from cleaner.planning.documents import decode
from cleaner.planning.policy_file import PolicyFile, parse_policy_file
from cleaner.planning.units import format_bytes
from cleaner.ports import Registry
from cleaner.settings import EngineSettings

log = logging.getLogger(__name__)
DEMO_ROWS = 12


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
    async with running(store) as url:
        settings = EngineSettings(
            policy_path="demo-policy.yaml", concurrency=concurrency, regions=(store.region,),
            endpoint_url=url,
        )  # fmt: skip
        async with wiring.open_engine(settings, policy, "sweep", credentials=DEMO_KEYS) as engine:
            out.write(f"Local ECR emulator at {url}; policy:\n\n{text}\n")
            report = await _plan_then_sweep(engine, policy, now, concurrency, out)
    out.write(compare(*report[:2]))
    return 0 if report[2] else 1


async def _plan_then_sweep(
    engine: Engine, policy: PolicyFile, now: datetime, concurrency: int, out: TextIO
) -> tuple[dict[str, Census], dict[str, Census], bool]:
    before = await census(engine.registry)
    plan = await engine.run(SweepRequest(policy=policy, now=now, concurrency=concurrency))
    shown = render_text(plan, now, max_rows=DEMO_ROWS)
    out.write(f"== plan (dry run; first {DEMO_ROWS} images of each repository) ==\n{shown}\n")
    request = SweepRequest(policy=policy, now=now, apply=True, concurrency=concurrency)
    report = await engine.run(request)
    out.write("== sweep ==\n" + render_text(report, now).splitlines()[-1] + "\n\n")
    return before, await census(engine.registry), report.ok


async def census(registry: Registry) -> dict[str, Census]:
    result = {}
    for repo in await registry.repositories():
        images = await registry.images(repo)
        result[repo.name] = Census(len(images), sum(i.size for i in images))
    return result


def compare(before: dict[str, Census], after: dict[str, Census]) -> str:
    rows = [("REPOSITORY", "IMAGES BEFORE", "AFTER", "SIZE BEFORE", "AFTER", "RECLAIMED")]
    for name in sorted(before):
        b, a = before[name], after.get(name, Census(0, 0))
        rows.append(
            (
                name,
                str(b.images),
                str(a.images),
                format_bytes(b.size),
                format_bytes(a.size),
                format_bytes(b.size - a.size),
            )
        )
    total_b = Census(sum(c.images for c in before.values()), sum(c.size for c in before.values()))
    total_a = Census(sum(c.images for c in after.values()), sum(c.size for c in after.values()))
    rows.append(
        (
            "total",
            str(total_b.images),
            str(total_a.images),
            format_bytes(total_b.size),
            format_bytes(total_a.size),
            format_bytes(total_b.size - total_a.size),
        )
    )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return (
        "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)
        + "\n"
    )
