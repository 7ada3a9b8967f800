"""The benchmark's targets as checks, and the Markdown table `make bench` writes."""

from __future__ import annotations

from typing import Any

MIN_EFFICIENCY = 0.8
MAX_CALLS_RATIO = 1.1
MIN_SPEEDUP = 20.0
MAX_P99_MS = 1500.0
MAX_PRUNES = 2
MAX_PLAN_CPU_S = 2.0
MAX_PLAN_RSS_MB = 400.0
MAX_STRANGER_HEALTHZ_MS = 250.0
MAX_SOAK_RSS_GROWTH = 1.5
MAX_RSS_RATIO = 1.15
MAX_RSS_MB = 300.0
MAX_JSON_S = 0.15


def checks(results: dict[str, Any]) -> list[dict[str, Any]]:
    s, r, q, p = results["sweep"], results["receiver"], results["queue"], results["plan"]
    return [
        _check(
            "sweep efficiency >= 0.8",
            s["efficiency"] >= MIN_EFFICIENCY,
            f"bound {s['bound_s']}s / wall {s['wall_s']}s = {s['efficiency']}",
        ),
        _check(
            "zero failures despite throttling",
            s["failures"] == 0,
            f"{s['failures']} failures, {s['throttled']} throttled answers",
        ),
        _check(
            "API calls <= 1.1x the minimum",
            s["calls_ratio"] <= MAX_CALLS_RATIO,
            f"{sum(s['api_calls'].values()) - s['verify_calls']} calls (without "
            f"{s['verify_calls']} verify reads) / {s['min_api_calls']} = {s['calls_ratio']}; "
            f"with verify reads: {s['calls_ratio_with_verify']}",
        ),
        _check(
            ">= 20x faster than the baseline",
            s["speedup_vs_baseline"] >= MIN_SPEEDUP,
            f"baseline {s['baseline_wall_s']}s / {s['wall_s']}s = {s['speedup_vs_baseline']}x",
        ),
        _check(
            "receiver p99 <= 1.5 s, <= 2 prunes per repository, planned state reached",
            r["p99_ms"] <= MAX_P99_MS
            and r["max_prunes_per_repository"] <= MAX_PRUNES
            and r["wrong_state"] == 0,
            f"p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, at most "
            f"{r['max_prunes_per_repository']} prunes, {r['wrong_state']} repositories wrong",
        ),
        _check(
            "queue path: planned state reached, every message deleted, none left in the queue",
            q["wrong_state"] == 0 and q["deleted"] == q["events"] and q["left_in_queue"] == 0,
            f"p50 {q['p50_ms']} ms, p99 {q['p99_ms']} ms, all {q['deleted']} of {q['events']} "
            f"deleted {q['drained_ms']} ms after the last send, {q['left_in_queue']} left, at "
            f"most {q['max_prunes_per_repository']} prunes, {q['wrong_state']} repositories wrong",
        ),
        _check(
            "plan 100k images <= 2 s CPU, <= 400 MB RSS",
            p["cpu_s"] <= MAX_PLAN_CPU_S and p["peak_rss_mb"] <= MAX_PLAN_RSS_MB,
            f"{p['images']} images: {p['cpu_s']} s CPU (median of {_runs(p)}), "
            f"{p['peak_rss_mb']} MB peak RSS",
        ),
        _check(
            "JSON report of 100k images <= 0.15 s",
            p["json_s"] <= MAX_JSON_S,
            f"{p['images']} images, {p['json_mb']} MB: {p['json_s']} s (median of "
            f"{' / '.join(f'{t} s' for t in p['json_s_runs'])}); the stdlib, whole and "
            f"pretty-printed, {p['json_stdlib_s']} s",
        ),
        *_memory_checks(results["memory"]),
        _burst_check(results["receiver_10x"]),
        *_in_use_checks(results.get("in_use")),
        *_soak_checks(results.get("soak")),
    ]


def _memory_checks(memory: dict[str, Any]) -> list[dict[str, Any]]:
    small, large = memory["runs"]
    return [
        _check(
            "peak RSS: 4x the registry <= 1.15x the memory",
            memory["rss_ratio"] <= MAX_RSS_RATIO,
            f"{large['images']:,} images {large['peak_rss_mb']} MB / {small['images']:,} "
            f"images {small['peak_rss_mb']} MB = {memory['rss_ratio']}",
        ),
        _check(
            f"peak RSS at {large['images']:,} images <= 300 MB",
            large["peak_rss_mb"] <= MAX_RSS_MB,
            f"{large['peak_rss_mb']} MB for {large['repositories']} repositories in "
            f"{large['wall_s']} s ({large['report_mb']} MB of JSON)",
        ),
    ]


def _burst_check(burst: dict[str, Any]) -> dict[str, Any]:
    """p99 <= 1.5 s where the registry's rates allow it. A prune starts a debounce after
    its repository's last push, and the burst's calls take at least `rate_bound_s` at the
    registry's rates; where those two add up to more, their sum is the target."""
    bound, debounce = burst["rate_bound_s"], burst["debounce_s"]
    target_ms = max(MAX_P99_MS, (bound + debounce) * 1000)
    why = (
        f"; 1.5 s cannot hold: the burst's calls need {bound} s at the registry's rates, "
        f"after a {debounce:g} s debounce, so the target is {target_ms / 1000:g} s"
        if target_ms > MAX_P99_MS
        else ""
    )
    return _check(
        "receiver burst at 10x: p99 <= 1.5 s (or the rate bound), <= 2 prunes per repository",
        burst["p99_ms"] <= target_ms
        and burst["max_prunes_per_repository"] <= MAX_PRUNES
        and burst["wrong_state"] == 0,
        f"{burst['events']} events, {burst['repositories']} repositories: p50 "
        f"{burst['p50_ms']} ms, p99 {burst['p99_ms']} ms, at most "
        f"{burst['max_prunes_per_repository']} prunes, {burst['wrong_state']} wrong{why}",
    )


MAX_REFRESH_SHARE = 0.25


def _in_use_checks(in_use: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The calls one look costs, and a receiver's refresh against the first look."""
    if in_use is None:
        return []
    ecs, fn = in_use["ecs"], in_use["lambda"]
    first, second = ecs["first"]["total_calls"], ecs["second"]["total_calls"]
    return [
        _check(
            "in use: a receiver's ECS refresh costs <= 25% of the first look",
            second <= MAX_REFRESH_SHARE * first,
            f"{ecs['clusters']} clusters, {ecs['services']} services, {ecs['tasks']} tasks: first "
            f"look {first} calls ({ecs['first']['wall_s']} s; {ecs['unbatched_calls']} without "
            f"the batch calls), refresh {second}; Lambda 50 functions: "
            f"{fn['first']['total_calls']} calls per look",
        )
    ]


def _soak_checks(soak: dict[str, Any] | None) -> list[dict[str, Any]]:
    if soak is None:
        return []
    strangers, rss = soak["strangers"], soak["rss_mb"]
    growth = rss[-1] / rss[1] if len(rss) > 2 and rss[1] else 1.0  # from the first sample in
    return [
        _check(
            "soak: every event answered 2xx, memory levels off",
            set(soak["statuses"]) <= {"200", "202"} and growth <= MAX_SOAK_RSS_GROWTH,
            f"{soak['events']} events in {soak['seconds']:g} s, answers {soak['statuses']}, "
            f"p99 {soak['answer_p99_ms']} ms; RSS {rss} MB",
        ),
        _check(
            "strangers' gzip bodies leave /healthz under 250 ms (p50)",
            strangers["healthz_p50_ms"] <= MAX_STRANGER_HEALTHZ_MS
            and strangers["statuses"] == [401],
            f"{strangers['clients']} clients, {strangers['bodies_refused']} bodies of "
            f"{strangers['body_kb']} KB refused; /healthz p50 {strangers['healthz_p50_ms']} ms, "
            f"p99 {strangers['healthz_p99_ms']} ms",
        ),
    ]


def latency_line(results: dict[str, Any]) -> str:
    """Both ways in, side by side: the same burst, the same planned state."""
    r, q = results["receiver"], results["queue"]
    return (
        f"to pruned, p50 / p99: POST /events {r['p50_ms']} / {r['p99_ms']} ms "
        f"(burst sent in {r['burst_s']} s); SQS {q['p50_ms']} / {q['p99_ms']} ms "
        f"(burst sent in {q['burst_s']} s, queue empty {q['drained_ms']} ms after it)"
    )


def _check(name: str, ok: bool, detail: str) -> dict[str, Any]:
    return {"name": name, "ok": bool(ok), "detail": detail}


def markdown(results: dict[str, Any]) -> str:
    m, s, r, p = results["machine"], results["sweep"], results["receiver"], results["plan"]
    q, mem, r10 = results["queue"], results["memory"], results["receiver_10x"]
    small, large = mem["runs"]
    base, checks = s["baseline_measured"], results["checks"]
    rates = ", ".join(f"{op} {tps:g}/s" for op, tps in s["throttle"].items())
    lines = [
        "# Benchmark results",
        "",
        f"Written by `make bench` ({'--quick' if results['quick'] else 'full run'}) on "
        f"{m['date']}: {m['cpus']} CPUs ({m['processor']}), Python {m['python']}, "
        f"{m['platform']}; whole run {m['total_s']} s.",
        "",
        f"Emulator: {s['latency_ms']:g} ms per call, throttled at {rates}; sweep concurrency "
        f"{s['concurrency']}. See bench/README.md for how the bound and the baseline are made.",
        "",
        "| Figure | ecr-cleaner | Baseline / bound / target |",
        "|---|---|---|",
        f"| Sweep size | {s['repositories']} repositories, {s['images']:,} images, "
        f"{s['deleted']:,} deleted | same work |",
        f"| Sweep wall time | {s['wall_s']} s | baseline {s['baseline_wall_s']:,} s "
        f"(measured {base['wall_s']} s for {base['deleted']:,} deletions, x{base['scale']}) |",
        f"| Speed-up vs baseline | {s['speedup_vs_baseline']}x | target >= 20x |",
        f"| Efficiency (bound / wall) | {s['efficiency']} | bound {s['bound_s']} s; "
        "target >= 0.8 |",
        f"| API calls (without verify reads) | {_calls(s)} | minimum {s['min_api_calls']:,}; "
        f"ratio {s['calls_ratio']} (target <= 1.1) |",
        f"| Verify reads before deletes | {s['verify_calls']:,} | ratio with them "
        f"{s['calls_ratio_with_verify']} |",
        f"| Throttled answers / failures | {s['throttled']:,} / {s['failures']} | "
        "target 0 failures |",
        f"| Baseline API calls | {_baseline_calls(base)} | one delete per image |",
        f"| Receiver burst | {r['events']} events, {r['repositories']} repositories | |",
        f"| Push to pruned, p50 / p99 | {r['p50_ms']} / {r['p99_ms']} ms | target p99 <= 1500 ms |",
        f"| Prunes (max per repository) | {r['prunes']} ({r['max_prunes_per_repository']}) | "
        f"target <= 2; {r['api_calls']} API calls |",
        f"| Same burst through SQS (moto), sent in {q['burst_s']} s (POSTs: {r['burst_s']} s) "
        f"| queue to pruned p50 / p99 {q['p50_ms']} / {q['p99_ms']} ms | queue empty "
        f"{q['drained_ms']} ms after the last send, {q['left_in_queue']} left |",
        f"| SQS path prunes (max per repository) | {q['prunes']} "
        f"({q['max_prunes_per_repository']}) | {q['api_calls']} API calls |",
        f"| Plan {p['images']:,} images: CPU | {p['cpu_s']} s, median of {_runs(p)} | "
        "target <= 2 s |",
        f"| Plan {p['images']:,} images: peak RSS | {p['peak_rss_mb']} MB | target <= 400 MB |",
        f"| JSON report of {p['images']:,} images ({p['json_mb']} MB) | {p['json_s']} s, "
        f"median | stdlib, whole and pretty-printed: {p['json_stdlib_s']} s; target <= 0.15 s |",
        f"| Receiver burst at 10x | {r10['events']:,} events, {r10['repositories']} "
        f"repositories: p50 / p99 {r10['p50_ms']} / {r10['p99_ms']} ms, at most "
        f"{r10['max_prunes_per_repository']} prunes | rate bound {r10['rate_bound_s']} s "
        f"after a {r10['debounce_s']:g} s debounce |",
        *(
            f"| `plan --output json`, {run['images']:,} images | peak RSS {run['peak_rss_mb']} "
            f"MB, {run['wall_s']} s, {run['report_mb']} MB of JSON | "
            f"{run['repositories']} x {mem['images_per_repository']:,} images |"
            for run in (small, large)
        ),
        f"| Peak RSS ratio, {mem['size_ratio']:g}x the registry | {mem['rss_ratio']} | "
        "target <= 1.15; the larger <= 300 MB |",
        "",
        "## Checks",
        "",
        *(f"- {'PASS' if c['ok'] else 'FAIL'} {c['name']}: {c['detail']}" for c in checks),
        "",
    ]  # fmt: skip
    return "\n".join(lines)


def _runs(p: dict[str, Any]) -> str:
    return " / ".join(f"{cpu} s" for cpu in p["cpu_s_runs"])


def _calls(s: dict[str, Any]) -> str:
    calls = dict(s["api_calls"])
    calls["DescribeImages"] = calls.get("DescribeImages", 0) - s["verify_calls"]
    return ", ".join(f"{op} {n:,}" for op, n in calls.items())


def _baseline_calls(base: dict[str, Any]) -> str:
    return ", ".join(f"{op} {n:,}" for op, n in base["api_calls"].items())
