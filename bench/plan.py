"""The planner benchmark, run in a fresh process so its CPU time and peak RSS are the
planner's: `python -m bench.plan IMAGES` prints one JSON line.

One repository of IMAGES images (ECR's default per-repository maximum is 100,000) from
bench/synth.py: plain and untagged CI builds, releases with semver tags, cosign signatures,
multi-arch indexes with attestations. Timed: building the artifact graph from the index
entries (as read from the manifests) and planning under three rules plus protections.
Not timed: making the Image objects, which stands for the listing.
"""

from __future__ import annotations

import io
import json
import resource
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from bench.synth import policy_doc, pushes
from cleaner.emulator.manifests import digest_of, parse_manifest
from cleaner.planning.graph import build_graph
from cleaner.planning.manifest_links import ChildRef, manifest_facts
from cleaner.planning.model import Image, RepositoryReport, RunReport
from cleaner.planning.planner import plan_repository
from cleaner.planning.policy_file import parse_policy_file
from cleaner.reports.json import report_to_json
from cleaner.reports.stream import JsonWriter


def listing(count: int, now: datetime) -> tuple[list[Image], dict[str, tuple[ChildRef, ...]]]:
    """The Images DescribeImages would list, and each index's children."""
    images: list[Image] = []
    children: dict[str, tuple[ChildRef, ...]] = {}
    for push in pushes(0, count, now):
        info = getattr(push.manifest, "info", None) or parse_manifest(push.manifest)
        digest = digest_of(push.manifest)
        if info.children:  # what the engine parses from the index it reads
            children[digest] = manifest_facts(push.manifest).children
        images.append(
            Image(
                digest=digest,
                tags=push.tags,
                pushed_at=push.pushed_at,
                size=info.size,
                media_type=info.media_type,
                artifact_media_type=info.artifact_media_type or "",
                subject=info.subject,
            )
        )
    return images, children


def peak_rss_kib() -> int:
    """This process's peak RSS. Linux keeps ru_maxrss across exec, so a child forked from a
    big benchmark process would report the parent's peak; VmHWM belongs to this image only.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def main() -> None:
    count = int(sys.argv[1])
    now = datetime.now(UTC)
    images, children = listing(count, now)
    policy = parse_policy_file(policy_doc("*"), "bench")
    entry = policy.entry_for("bench/plan")
    assert entry is not None and entry.lifecycle is not None
    started = time.process_time()
    graph = build_graph(images, children, {})
    plan = plan_repository(
        "bench/plan", images, entry.lifecycle, now, policy.protect, policy.safety, graph=graph
    )
    cpu_s = time.process_time() - started
    peak_kib = peak_rss_kib()
    result = {
        "images": len(images),
        "expire": len(plan.expire),
        "cpu_s": round(cpu_s, 3),
        "peak_rss_mb": round(peak_kib / 1024, 1),
        **json_report_s(RepositoryReport("bench/plan", plan), now),
    }
    print(json.dumps(result))


def json_report_s(report: RepositoryReport, now: datetime) -> dict[str, float]:
    """Writing the plan as `--output json` does (`JsonWriter`), against the whole report
    built and pretty-printed by the stdlib, as the cleaner did before it streamed. Both into
    memory, best of three: the figure is the serialisation, not the disk."""
    run = RunReport(dry_run=True, repositories=(report,))

    def streamed() -> int:
        out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
        writer = JsonWriter(out, dry_run=True, now=now)
        writer.repository(report)
        writer.finish(RunReport(dry_run=True))
        return out.buffer.tell()

    def stdlib() -> int:
        return len(json.dumps(report_to_json(run, now), indent=2))

    return {
        "json_s": _best_of(3, streamed)[0],
        "json_mb": round(_best_of(1, streamed)[1] / 1e6, 1),
        "json_stdlib_s": _best_of(3, stdlib)[0],
    }


def _best_of(runs: int, job: Callable[[], int]) -> tuple[float, int]:
    times, size = [], 0
    for _ in range(runs):
        started = time.perf_counter()
        size = job()
        times.append(time.perf_counter() - started)
    return round(min(times), 3), size


if __name__ == "__main__":
    main()
