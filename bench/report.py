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
        *_in_use_checks(results.get("in_use")),
        *_soak_checks(results.get("soak")),
    ]


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
    q = results["queue"]
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
