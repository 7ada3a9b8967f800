"""The receiver benchmark: a burst of CI pushes, from POST /events to the planned state.

Each repository starts with `KEEP` old single-platform images under the policy "keep the
`KEEP` newest". The burst pushes `pushes` buildx multi-arch images into every repository
(index, two platform manifests, two attestations; two tags on the index), interleaved
across repositories as parallel CI jobs would, and POSTs one EventBridge event per PutImage
and per extra tag to a real receiver app (real EnginePruner and EcrRegistry) over HTTP. The
planned state is known in advance: exactly the `pushes` oldest images are gone. Latency is
measured per repository from its last POST (the moment its planned state is fixed) until
the emulator's store shows that state; the shipped scheduler settings are used.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from aiohttp import web

from cleaner import wiring
from cleaner.emulator import RegistryStore, running
from cleaner.emulator import manifests as mf
from cleaner.planning.model import RunReport
from cleaner.planning.policy_file import PolicyFile, parse_policy_file
from cleaner.receiver.auth import TokenAuth
from cleaner.receiver.http import Deps, make_app
from cleaner.receiver.pruner import EnginePruner
from cleaner.receiver.runner import ReceiverRunner
from cleaner.receiver.scheduler import SchedulerSettings
from cleaner.settings import EngineSettings

KEEP = 20
TIMEOUT_S = 30.0


class CountingPruner:
    """Counts the prunes the scheduler starts, per repository."""

    def __init__(self, inner: EnginePruner) -> None:
        self.inner = inner
        self.prunes: Counter[str] = Counter()

    async def prune(self, repositories: tuple[str, ...], *, dry_run: bool) -> RunReport:
        self.prunes.update(repositories)
        return await self.inner.prune(repositories, dry_run=dry_run)


def seed_old(store: RegistryStore, names: list[str], now: datetime) -> dict[str, list[str]]:
    """KEEP old images per repository; returns their digests, oldest first."""
    old: dict[str, list[str]] = {}
    for name in names:
        store.create_repository(name)
        old[name] = [
            store.put_image(
                name,
                mf.make_manifest(f"{name}:{k}"),
                tag=f"main-{k}",
                pushed_at=now - timedelta(days=30 - k),
            )
            for k in range(KEEP)
        ]
    return old


def push(store: RegistryStore, name: str, build: int) -> list[tuple[str, str | None]]:
    """One buildx push; returns (digest, tag) per event ECR would send."""
    events: list[tuple[str, str | None]] = []
    entries = []
    for arch in ("amd64", "arm64"):
        text = mf.make_manifest(f"{name}:{build}:{arch}", oci=True)
        attestation = mf.attestation_manifest(mf.digest_of(text))
        for manifest in (text, attestation):
            events.append((store.put_image(name, manifest), None))
        entries += [
            mf.descriptor(text, platform=mf.Platform(arch)),
            mf.attestation_descriptor(attestation, mf.digest_of(text)),
        ]
    index = mf.index_manifest(entries, oci=True)
    digest = store.put_image(name, index, tag=f"build-{build}")
    store.add_tag(name, digest, "latest")
    return [*events, (digest, f"build-{build}"), (digest, "latest")]


def event(name: str, digest: str, tag: str | None) -> dict[str, Any]:
    detail = {"result": "SUCCESS", "repository-name": name, "image-digest": digest}
    detail |= {"action-type": "PUSH", **({"image-tag": tag} if tag else {})}
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "ECR Image Action",
        "source": "aws.ecr",
        "account": "123456789012",
        "time": datetime.now(UTC).isoformat(),
        "region": "us-east-1",
        "resources": [],
        "detail": detail,
    }


def burst_policy() -> PolicyFile:
    rules = [{"rulePriority": 1, "selection": {"tagStatus": "any", "countType":
             "imageCountMoreThan", "countNumber": KEEP}, "action": {"type": "expire"}}]  # fmt: skip
    # No cluster in a benchmark: in-use protection off, whatever kubeconfig the machine has.
    doc = {"repositories": [{"match": "recv/*", "rules": rules}], "protect": {"in_use": False}}
    return parse_policy_file(doc, "bench")


def planned_state_misses(store: RegistryStore, names: list[str], pushes: int) -> int:
    """Repositories not in the planned state: KEEP - pushes old images plus 5 per push."""
    return sum(len(store.repos[n].images) != KEEP + 4 * pushes for n in names)


@dataclass(frozen=True, slots=True)
class Seeded:
    """The registry before a burst, shared by the POST and the SQS paths."""

    store: RegistryStore
    names: list[str]
    old: dict[str, list[str]]
    """Each repository's old images, oldest first: the burst's first `pushes` must go."""


def seeded(repositories: int) -> Seeded:
    store = RegistryStore()
    names = [f"recv/app{i}" for i in range(repositories)]
    return Seeded(store, names, seed_old(store, names, datetime.now(UTC)))


@asynccontextmanager
async def counting_pruner(url: str) -> AsyncIterator[CountingPruner]:
    """The receiver's pruner over the engine `serve` opens, against the emulator at `url`."""
    policy = burst_policy()
    settings = EngineSettings("bench", regions=("us-east-1",), endpoint_url=url)
    keys = wiring.Credentials("bench", "bench")  # the emulator checks no credentials
    async with wiring.open_engine(settings, policy, "serve", credentials=keys) as engine:
        yield CountingPruner(EnginePruner(engine, policy))


async def run_receiver(
    repositories: int, pushes: int, latency_ms: float, throttle: Mapping[str, float]
) -> dict[str, Any]:
    burst = seeded(repositories)
    store, names = burst.store, burst.names
    async with (
        running(store, latency_ms=latency_ms, throttle=throttle) as url,
        counting_pruner(url) as pruner,
    ):
        figures = await _serve_burst(store, pruner, names, pushes, burst.old)
    figures["wrong_state"] = planned_state_misses(store, names, pushes)
    figures["rate_bound_s"] = rate_bound_s(figures.pop("calls_by_operation"), throttle)
    figures["debounce_s"] = SchedulerSettings().debounce_s
    return figures


def rate_bound_s(calls: Mapping[str, int], throttle: Mapping[str, float]) -> float:
    """The least time the registry's rates allow for the burst's calls: the slowest
    operation's calls over its rate. Every prune of a burst this short runs at about the
    same moment, so the slowest repository cannot be pruned sooner."""
    return round(max((n / throttle[op] for op, n in calls.items() if op in throttle), default=0), 2)


async def _serve_burst(
    store: RegistryStore, pruner: CountingPruner, names: list[str], pushes: int, old: Any
) -> dict[str, Any]:
    """The real receiver app over the engine, on a loopback socket, fed one burst."""
    runner = ReceiverRunner(make_app(Deps(pruner=pruner, auth=TokenAuth(None))))
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        before = Counter(store.calls)
        latencies, posted, burst_s = await _burst(
            store, f"http://{host}:{port}", names, pushes, old
        )
        calls = Counter(store.calls) - before
    finally:
        await runner.cleanup()  # drains the scheduler: every prune has ended
    figures = burst_figures(latencies, posted, len(names), pruner.prunes, calls.total(), burst_s)
    return figures | {"calls_by_operation": dict(calls)}


async def _burst(
    store: RegistryStore, url: str, names: list[str], pushes: int, old: dict[str, list[str]]
) -> tuple[list[float], int, float]:
    last_post: dict[str, float] = {}
    posted = 0
    started = time.perf_counter()
    async with aiohttp.ClientSession() as http:
        for build in range(pushes):
            for name in names:
                for digest, tag in push(store, name, build):
                    async with http.post(f"{url}/events", json=event(name, digest, tag)) as r:
                        r.raise_for_status()
                    posted += 1
                last_post[name] = time.perf_counter()
        burst_s = time.perf_counter() - started
        done = await asyncio.gather(*(planned_at(store, n, old[n][:pushes]) for n in names))
    return [(done[i] - last_post[n]) * 1000 for i, n in enumerate(names)], posted, burst_s


async def planned_at(store: RegistryStore, name: str, expired: list[str]) -> float:
    """When the expired images are gone (and only they: checked by the caller's figures)."""
    deadline = time.perf_counter() + TIMEOUT_S
    images = store.repos[name].images
    while any(d in images for d in expired):
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{name} did not reach its planned state in {TIMEOUT_S}s")
        await asyncio.sleep(0.005)
    return time.perf_counter()


def burst_figures(
    latencies: list[float],
    posted: int,
    repositories: int,
    prunes: Counter[str],
    calls: int,
    burst_s: float,
) -> dict[str, Any]:
    ordered = sorted(latencies)
    return {
        "events": posted,
        "burst_s": round(burst_s, 2),
        "repositories": repositories,
        "p50_ms": round(statistics.median(ordered), 1),
        "p99_ms": round(_percentile(ordered, 0.99), 1),
        "prunes": sum(prunes.values()),
        "max_prunes_per_repository": max(prunes.values(), default=0),
        "api_calls": calls,
    }


def _percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile (with 8 repositories, p99 is the slowest one)."""
    rank = max(1, min(len(ordered), round(q * len(ordered) + 0.5)))
    return ordered[rank - 1]
