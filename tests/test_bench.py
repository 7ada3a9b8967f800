"""A tiny run of bench/run.py so the benchmark cannot rot: shape and checks, not timings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_runs_and_reports_every_figure(tmp_path: Path) -> None:
    out, md = tmp_path / "bench.json", tmp_path / "RESULTS.md"
    tiny = ["--quick", "--repositories", "3", "--images", "150", "--baseline-budget-s", "1"]
    tiny += ["--receiver-repositories", "2", "--receiver-pushes", "2", "--plan-images", "2000"]
    tiny += ["--plan-runs", "2", "--in-use-clusters", "2", "--in-use-services", "2"]
    tiny += ["--memory-sizes", "2,8", "--memory-images", "100", "--burst-repositories", "4"]
    command = [sys.executable, "bench/run.py", *tiny, "--json", str(out), "--markdown", str(md)]
    # Its own process: the benchmark runs event loops and subprocesses of its own. The exit
    # code is not asserted: timing targets are for `make bench`, not for the test suite.
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.exists(), done.stderr
    results = json.loads(out.read_text())
    sweep, receiver, plan = results["sweep"], results["receiver"], results["plan"]
    for key in ("repositories", "images", "deleted", "api_calls", "min_api_calls", "wall_s",
                "bound_s", "efficiency", "baseline_wall_s", "speedup_vs_baseline", "throttled",
                "verify_calls"):  # fmt: skip
        assert key in sweep, key
    assert sweep["repositories"] == 3 and sweep["deleted"] > 0 and sweep["failures"] == 0
    assert set(sweep["api_calls"]) >= {"DescribeImages", "BatchDeleteImage"}
    for key in ("events", "repositories", "p50_ms", "p99_ms", "prunes", "api_calls"):
        assert key in receiver, key
    assert receiver["wrong_state"] == 0
    queue = results["queue"]
    for key in ("events", "burst_s", "p50_ms", "p99_ms", "prunes", "deleted", "drained_ms"):
        assert key in queue, key
    assert queue["events"] == receiver["events"] and queue["wrong_state"] == 0
    assert queue["deleted"] == queue["events"] and queue["left_in_queue"] == 0
    assert plan["images"] == 2000 and plan["cpu_s"] > 0 and plan["peak_rss_mb"] > 0
    assert len(plan["cpu_s_runs"]) == 2 and min(plan["cpu_s_runs"]) <= plan["cpu_s"]
    in_use = results["in_use"]
    assert in_use["ecs"]["services"] == 4 and in_use["ecs"]["first"]["total_calls"] > 0
    assert in_use["lambda"]["first"]["references"] > 0
    assert plan["json_s"] > 0 and plan["json_mb"] > 0 and plan["json_stdlib_s"] > 0
    memory = results["memory"]
    small, large = memory["runs"]
    assert (small["planned_images"], large["planned_images"]) == (200, 800)
    assert small["peak_rss_mb"] > 0 and memory["size_ratio"] == 4
    burst = results["receiver_10x"]
    assert burst["repositories"] == 4 and burst["wrong_state"] == 0 and burst["rate_bound_s"] > 0
    assert len(results["checks"]) == 12
    assert "sweep efficiency" in done.stdout  # the PASS/FAIL lines were printed
    assert "to pruned, p50 / p99: POST /events" in done.stdout
    assert "| Sweep wall time |" in md.read_text()
    assert "Peak RSS ratio" in md.read_text() and "JSON report of 2,000 images" in md.read_text()
