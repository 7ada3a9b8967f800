"""The memory benchmark: `ecr-cleaner plan --output json` as a user runs it, in its own
process, against the emulator in another, at two registry sizes.

Each size is a fresh emulator seeded with bench/synth.py repositories of `images` images
(plain CI builds, signed builds, multi-arch indexes with attestations, releases), served
without latency or throttling, so the run is as fast, and holds as much at once, as the
cleaner allows. The figure is the CLI process's own peak RSS (`wait4`'s `ru_maxrss`, which
belongs to that child alone), and the check is the ratio between the two sizes: memory
should follow the repositories in flight, not the registry.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.child import ROOT
from bench.sweep import emulator_process
from bench.synth import policy_doc

CONCURRENCY = 10


def run_memory(sizes: tuple[int, int], images: int) -> dict[str, Any]:
    """Peak RSS of a plan over `sizes[0]` and `sizes[1]` repositories of `images` each."""
    runs = [plan_once(repositories, images) for repositories in sizes]
    small, large = runs
    return {
        "runs": runs,
        "images_per_repository": images,
        "rss_ratio": round(large["peak_rss_mb"] / small["peak_rss_mb"], 3),
        "size_ratio": round(large["images"] / small["images"], 2),
    }


def plan_once(repositories: int, images: int) -> dict[str, Any]:
    spec = {
        "now": time.time(),
        "repositories": repositories,
        "images": images,
        "baseline_repositories": 0,
        "latency_ms": 0.0,
        "throttle": {},
    }
    with (
        tempfile.TemporaryDirectory() as folder,
        emulator_process(spec) as hello,
    ):
        policy = Path(folder, "policy.json")
        policy.write_text(json.dumps(policy_doc("sweep/*")))
        report = Path(folder, "report.json")
        figures = _run_cli(hello["url"], policy, report)
        figures |= {"repositories": repositories, "images": hello["images"]}
        figures |= _report_figures(report)
    return figures


def _run_cli(url: str, policy: Path, report: Path) -> dict[str, Any]:
    command = [
        sys.executable, "-m", "cleaner", "plan", "--policy", str(policy), "--endpoint-url", url,
        "--output", "json", "--concurrency", str(CONCURRENCY),
    ]  # fmt: skip
    env = os.environ | {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    usage = report.with_suffix(".usage.json")
    # Through a small launcher: Linux carries the peak RSS of the process that forked across
    # exec (getrusage(2)), and this benchmark's own process is larger than the cleaner.
    launcher = [sys.executable, "-m", "bench.memory", str(usage), *command]
    with report.open("wb") as out:
        done = subprocess.run(launcher, cwd=ROOT, env=env, stdout=out, stderr=subprocess.PIPE)  # noqa: S603
    if done.returncode != 0:
        raise RuntimeError(f"plan exited {done.returncode}: {done.stderr.decode()[-2000:]}")
    figures: dict[str, Any] = json.loads(usage.read_text())
    return figures


def measure(usage: Path, command: list[str]) -> int:
    """Run `command` (its stdout is ours) and write its wall time, CPU and peak RSS."""
    started = time.perf_counter()
    proc = subprocess.Popen(command)  # noqa: S603
    # wait4, not wait: its rusage is this child's own, not every child's maximum.
    _, status, rusage = os.wait4(proc.pid, 0)
    proc.returncode = code = os.waitstatus_to_exitcode(status)
    figures = {
        "wall_s": round(time.perf_counter() - started, 2),
        "cpu_s": round(rusage.ru_utime + rusage.ru_stime, 2),
        "peak_rss_mb": round(rusage.ru_maxrss / 1024, 1),
    }
    usage.write_text(json.dumps(figures))
    return code


def _report_figures(report: Path) -> dict[str, Any]:
    """The report's size, and its summary (the last line) as proof it is whole."""
    with report.open("rb") as f:
        f.seek(max(0, report.stat().st_size - 1_000_000))
        tail = f.read().decode().rsplit("\n]", 1)[1]
    summary = json.loads("{" + tail.removeprefix(",").strip())["summary"]["total"]
    return {
        "report_mb": round(report.stat().st_size / 1e6, 1),
        "planned_images": summary["images"],
        "expire": summary["expire"],
    }


if __name__ == "__main__":
    sys.exit(measure(Path(sys.argv[1]), sys.argv[2:]))
