"""The sweep benchmark: a full `Engine.run` against the emulator in a separate process.

Afterwards the same emulator runs the baseline (bench/baseline.py) on twin repositories, and
the figures are compared with the bound the registry's rates and latency allow (bench/README.md).
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.baseline import run_baseline
from bench.child import speaking_child
from bench.emulator_proc import baseline_name, sweep_name
from bench.synth import policy_doc
from cleaner import wiring
from cleaner.clients.ratelimit import AdaptiveLimiter
from cleaner.engine import SweepRequest
from cleaner.planning.model import RunReport
from cleaner.planning.policy_file import parse_policy_file
from cleaner.settings import EngineSettings

LIST_PAGE = 1000  # DescribeImages maxResults the registry adapter asks for
BATCH = 100  # BatchDeleteImage / BatchGetImage / DescribeImages-by-id per call


@dataclass(frozen=True, slots=True)
class SweepConfig:
    repositories: int
    images: int
    """Per repository."""
    latency_ms: float
    throttle: Mapping[str, float]
    concurrency: int = 10
    baseline_repositories: int = 1
    baseline_budget_s: float = 30.0


@contextmanager
def emulator_process(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Start bench/emulator_proc.py; yields its hello line ({"url", "images", "seed_s"})."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(spec, f)
    try:
        with speaking_child([sys.executable, "-m", "bench.emulator_proc", f.name]) as hello:
            yield hello
    finally:
        Path(f.name).unlink(missing_ok=True)


def emulator_stats(url: str) -> dict[str, dict[str, int]]:
    with urllib.request.urlopen(f"{url}/_emulator/stats", timeout=30) as answer:  # noqa: S310
        stats: dict[str, dict[str, int]] = json.load(answer)
    return stats


def accepted_calls(stats: Mapping[str, Mapping[str, int]]) -> dict[str, int]:
    """Requests the emulator served, by operation: received minus injected failures."""
    rejected: Counter[str] = Counter()
    for key, n in stats["rejected"].items():
        rejected[key.partition(":")[2]] += n
    return {op: n - rejected[op] for op, n in sorted(stats["calls"].items()) if n > rejected[op]}


def throttled_answers(stats: Mapping[str, Mapping[str, int]]) -> int:
    return sum(n for k, n in stats["rejected"].items() if k.startswith("ThrottlingException:"))


async def sweep_once(url: str, names: list[str], concurrency: int) -> tuple[RunReport, float]:
    policy = parse_policy_file(policy_doc("sweep/*"), "bench")
    request = SweepRequest(
        policy, datetime.now(UTC), tuple(names), apply=True, concurrency=concurrency
    )
    settings = EngineSettings("bench", concurrency, regions=("us-east-1",), endpoint_url=url)
    async with wiring.open_engine(
        settings, policy, "sweep", limiter=AdaptiveLimiter(), credentials=BENCH_KEYS
    ) as engine:
        started = time.perf_counter()
        report = await engine.run(request)
        return report, time.perf_counter() - started


BENCH_KEYS = wiring.Credentials("bench", "bench")  # the emulator checks no credentials


def run_sweep(config: SweepConfig) -> dict[str, Any]:
    spec = {
        "now": time.time(),
        "repositories": config.repositories,
        "images": config.images,
        "baseline_repositories": config.baseline_repositories,
        "latency_ms": config.latency_ms,
        "throttle": dict(config.throttle),
    }
    names = [sweep_name(i) for i in range(config.repositories)]
    with emulator_process(spec) as hello:
        url = hello["url"]
        report, wall_s = asyncio.run(sweep_once(url, names, config.concurrency))
        stats = emulator_stats(url)
        twins = [(baseline_name(i), r.deleted) for i, r in enumerate(report.repositories)]
        baseline = asyncio.run(
            run_baseline(url, twins[: config.baseline_repositories], config.baseline_budget_s)
        )
    figures = sweep_figures(config, report, wall_s, stats)
    figures["seed_s"] = round(hello["seed_s"], 2)
    figures.update(baseline_figures(baseline, figures["deleted"], wall_s))
    return figures


def sweep_figures(
    config: SweepConfig, report: RunReport, wall_s: float, stats: Mapping[str, Any]
) -> dict[str, Any]:
    repos = [_repo_counts(r) for r in report.repositories]
    calls = accepted_calls(stats)
    pages = sum(r["pages"] for r in repos)
    verify = max(0, calls.get("DescribeImages", 0) - pages)
    minimum = sum(r["pages"] + r["index_reads"] + r["batches"] for r in repos)
    bound = bound_s(config, calls, repos, verify_per_batch=verify > 0)
    failures = sum(len(r.failed) + (r.error is not None) for r in report.repositories)
    return {
        "repositories": len(repos),
        "images": sum(r["images"] for r in repos),
        "deleted": sum(r["deleted"] for r in repos),
        "api_calls": calls,
        "min_api_calls": minimum,
        "verify_calls": verify,
        "calls_ratio": round((sum(calls.values()) - verify) / max(1, minimum), 3),
        "calls_ratio_with_verify": round(
            sum(calls.values()) / max(1, minimum + sum(r["batches"] for r in repos)), 3
        ),
        "wall_s": round(wall_s, 2),
        "bound_s": round(bound, 2),
        "efficiency": round(bound / wall_s, 3),
        "throttled": throttled_answers(stats),
        "failures": failures,
        "concurrency": config.concurrency,
        "latency_ms": config.latency_ms,
        "throttle": dict(config.throttle),
    }


def _repo_counts(report: Any) -> dict[str, int]:
    decisions = report.plan.decisions if report.plan else ()
    images = len(decisions)
    deleted = len(report.deleted)
    return {
        "images": images,
        "deleted": deleted,
        "pages": max(1, math.ceil(images / LIST_PAGE)),
        "index_reads": math.ceil(sum(d.image.is_index for d in decisions) / BATCH),
        "batches": math.ceil(deleted / BATCH),
    }


def bound_s(
    config: SweepConfig,
    calls: Mapping[str, int],
    repos: list[dict[str, int]],
    *,
    verify_per_batch: bool,
) -> float:
    """The fastest a sweep making these calls could go: rates, or latency on the chains."""
    by_rate = [n / config.throttle[op] for op, n in calls.items() if op in config.throttle]
    per_call = 2 if verify_per_batch else 1
    chains = [r["pages"] + r["index_reads"] + per_call * r["batches"] for r in repos]
    latency = config.latency_ms / 1000
    critical = max(max(chains, default=0), sum(chains) / config.concurrency) * latency
    return max([critical, *by_rate])


def baseline_figures(baseline: Mapping[str, Any], deleted: int, wall_s: float) -> dict[str, Any]:
    """Scale the baseline's measured time by the ratio of deletions (see README)."""
    done = baseline["deleted"]
    scaled = baseline["wall_s"] * deleted / done if done else float("nan")
    return {
        "baseline_wall_s": round(scaled, 1),
        "speedup_vs_baseline": round(scaled / wall_s, 1),
        "baseline_measured": {
            "repositories": baseline["repositories"],
            "deleted": done,
            "wall_s": round(baseline["wall_s"], 2),
            "api_calls": baseline["api_calls"],
            "scale": round(deleted / done, 2) if done else None,
        },
    }
