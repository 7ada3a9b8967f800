"""Benchmarks: sweep vs the rate-limit bound and the baseline, receiver latency (POST and
SQS, and a burst 10x larger), planner and JSON report cost, the CLI's peak RSS at two
registry sizes. `bench/run.py [--quick] --json OUT.json [--markdown RESULTS.md]`.

Prints one PASS/FAIL line per target and exits 1 when one fails (bench/README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make `bench` and `cleaner` importable
    sys.path.insert(0, str(ROOT))

from bench.in_use import run_in_use  # noqa: E402
from bench.memory import run_memory  # noqa: E402
from bench.queue_burst import run_queue  # noqa: E402
from bench.receiver import run_receiver  # noqa: E402
from bench.report import checks, latency_line, markdown  # noqa: E402
from bench.soak import run_soak  # noqa: E402
from bench.sweep import SweepConfig, run_sweep  # noqa: E402

DEFAULT_THROTTLE = {"DescribeImages": 50.0, "BatchDeleteImage": 20.0, "BatchGetImage": 100.0}
# (repositories, images per repository, baseline repositories, baseline budget in seconds)
FULL = (500, 2000, 2, 60.0)
QUICK = (50, 1000, 1, 20.0)
# The memory benchmark: `plan --output json` over two registry sizes, 4x apart (repositories
# of 1,000 images); the full run's larger one is 2M images.
FULL_MEMORY = (500, 2000)
QUICK_MEMORY = (100, 400)
BURST_REPOSITORIES = 80  # the receiver burst at 10x: 80 repositories, 2,400 events


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="50 x 1,000 images, < 3 min")
    parser.add_argument("--json", metavar="OUT", help="write the figures here")
    parser.add_argument("--markdown", metavar="MD", help="write a Markdown table here")
    parser.add_argument("--repositories", type=int, help="override the sweep size")
    parser.add_argument("--images", type=int, help="images per repository")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument(
        "--throttle",
        action="append",
        default=[],
        metavar="OP=TPS",
        help=f"override a rate (defaults: {_rates(DEFAULT_THROTTLE)})",
    )
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--receiver-repositories", type=int, default=8)
    parser.add_argument("--receiver-pushes", type=int, default=5)
    parser.add_argument("--plan-images", type=int, default=100_000)
    parser.add_argument(
        "--plan-runs", type=int, default=5, help="fresh processes; the median CPU time counts"
    )
    parser.add_argument(
        "--memory-sizes",
        type=_pair,
        metavar="SMALL,LARGE",
        help=f"repositories of the two memory runs (default {_sizes(QUICK_MEMORY)}, "
        f"full {_sizes(FULL_MEMORY)})",
    )
    parser.add_argument("--memory-images", type=int, default=1000, help="per repository")
    parser.add_argument("--burst-repositories", type=int, default=BURST_REPOSITORIES)
    parser.add_argument("--baseline-budget-s", type=float, help="time given to the baseline")
    parser.add_argument("--in-use-clusters", type=int, default=50, help="ECS clusters")
    parser.add_argument("--in-use-services", type=int, default=20, help="services per cluster")
    parser.add_argument(
        "--soak", action="store_true", help="also: the receiver under sustained load and strangers"
    )
    parser.add_argument("--soak-seconds", type=float, default=240.0, help="(--quick: 30)")
    parser.add_argument("--soak-rate", type=float, default=100.0, help="push events per second")
    return parser.parse_args(argv)


def _pair(text: str) -> tuple[int, int]:
    small, _, large = text.partition(",")
    return int(small), int(large)


def _sizes(sizes: tuple[int, int]) -> str:
    return f"{sizes[0]},{sizes[1]}"


def _rates(rates: dict[str, float]) -> str:
    return ", ".join(f"{op} {tps:g}/s" for op, tps in rates.items())


def throttle_of(overrides: Sequence[str]) -> dict[str, float]:
    rates = dict(DEFAULT_THROTTLE)
    for item in overrides:
        op, _, tps = item.partition("=")
        rates[op] = float(tps)
    return rates


def sweep_config(args: argparse.Namespace) -> SweepConfig:
    repos, images, baseline_repos, budget = QUICK if args.quick else FULL
    return SweepConfig(
        repositories=args.repositories or repos,
        images=args.images or images,
        latency_ms=args.latency_ms,
        throttle=throttle_of(args.throttle),
        concurrency=args.concurrency,
        baseline_repositories=baseline_repos,
        baseline_budget_s=args.baseline_budget_s or budget,
    )


def run_plan(images: int, runs: int) -> dict[str, Any]:
    """Each run in a fresh interpreter, so CPU time and peak RSS are the planner's alone.

    The median of several: on this VM the same CPU-bound code takes up to 1.9 times as long
    from one process to the next (bench/README.md), and one run would measure the neighbours.
    """
    command = [sys.executable, "-m", "bench.plan", str(images)]
    done = [
        json.loads(
            subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)  # noqa: S603
            .stdout.strip()
            .splitlines()[-1]
        )
        for _ in range(runs)
    ]
    cpu = [run["cpu_s"] for run in done]
    return {
        "images": done[0]["images"],
        "expire": done[0]["expire"],
        "cpu_s": round(statistics.median(cpu), 3),
        "cpu_s_runs": cpu,
        "peak_rss_mb": max(run["peak_rss_mb"] for run in done),
        "json_s": round(statistics.median(run["json_s"] for run in done), 3),
        "json_s_runs": [run["json_s"] for run in done],
        "json_mb": done[0]["json_mb"],
        "json_stdlib_s": round(statistics.median(run["json_stdlib_s"] for run in done), 3),
    }


def machine() -> dict[str, Any]:
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(terse=True),
        "processor": _cpu_model(),
    }


def _cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor()
    return next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    config = sweep_config(args)
    results: dict[str, Any] = {"machine": machine(), "quick": args.quick}
    print(f"sweep: {config.repositories} x {config.images} images ...", flush=True)
    results["sweep"] = run_sweep(config)
    print("receiver burst ...", flush=True)
    results["receiver"] = asyncio.run(
        run_receiver(
            args.receiver_repositories, args.receiver_pushes, args.latency_ms, config.throttle
        )
    )
    burst = args.burst_repositories
    print(f"receiver burst at 10x: {burst} repositories ...", flush=True)
    results["receiver_10x"] = asyncio.run(
        run_receiver(burst, args.receiver_pushes, args.latency_ms, config.throttle)
    )
    print("receiver burst through SQS (moto) ...", flush=True)
    results["queue"] = asyncio.run(
        run_queue(
            args.receiver_repositories, args.receiver_pushes, args.latency_ms, config.throttle
        )
    )
    print("planner ...", flush=True)
    results["plan"] = run_plan(args.plan_images, args.plan_runs)
    sizes = args.memory_sizes or (QUICK_MEMORY if args.quick else FULL_MEMORY)
    each = args.memory_images
    print(f"memory: plan --output json, {sizes[0]} and {sizes[1]} x {each} images ...", flush=True)
    results["memory"] = run_memory(sizes, each)
    clusters, services = args.in_use_clusters, args.in_use_services
    print(f"in-use sources: {clusters} ECS clusters x {services} services ...", flush=True)
    results["in_use"] = asyncio.run(run_in_use(clusters, services))
    if args.soak:
        seconds = 30.0 if args.quick and args.soak_seconds == 240.0 else args.soak_seconds
        print(f"receiver soak: {seconds:g} s at {args.soak_rate:g} events/s ...", flush=True)
        results["soak"] = asyncio.run(run_soak(seconds, args.soak_rate, 200, 4, 20.0))
    results["checks"] = checks(results)
    results["machine"]["total_s"] = round(time.perf_counter() - started, 1)
    for check in results["checks"]:
        print(f"{'PASS' if check['ok'] else 'FAIL'}  {check['name']}: {check['detail']}")
    print(latency_line(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    if args.markdown:
        Path(args.markdown).write_text(markdown(results))
    return 0 if all(c["ok"] for c in results["checks"]) else 1


if __name__ == "__main__":
    sys.exit(main())
