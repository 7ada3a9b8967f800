"""The receiver under sustained load and under strangers (`bench/run.py --soak`).

Two phases against the production runner and the real engine, the emulator in-process:
1. **Soak.** Real EventBridge push events for `seconds`, at `rate` per second over
   `repositories` repositories (one new image per event), while /healthz is probed every
   100 ms. Reported: the answer latencies, the prunes, and this process's resident memory
   at the start, the middle and the end (the emulator's images included, so growth is an
   upper bound on the receiver's).
2. **Strangers.** `strangers` clients post unauthenticated gzip bodies (250 MiB of zeros in
   about 250 KB) in a loop while /healthz is probed; reported: its p50 and p99.
"""

from __future__ import annotations

import asyncio
import gzip
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from cleaner import wiring
from cleaner.emulator import RegistryStore, running
from cleaner.emulator import manifests as mf
from cleaner.planning.policy_file import parse_policy_file
from cleaner.receiver.auth import TokenAuth
from cleaner.receiver.http import Deps, make_app
from cleaner.receiver.pruner import EnginePruner
from cleaner.receiver.runner import ReceiverRunner
from cleaner.settings import EngineSettings

TOKEN = "bench-token"  # noqa: S105 - a benchmark's own token
KEEP = 5


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def event(repository: str, digest: str) -> dict[str, Any]:
    detail = {"result": "SUCCESS", "repository-name": repository, "image-digest": digest,
              "action-type": "PUSH", "image-tag": "latest"}  # fmt: skip
    return {"version": "0", "id": str(uuid.uuid4()), "detail-type": "ECR Image Action",
            "source": "aws.ecr", "account": "123456789012", "region": "us-east-1",
            "time": datetime.now(UTC).isoformat(), "resources": [], "detail": detail}  # fmt: skip


async def run_soak(
    seconds: float, rate: float, repositories: int, strangers: int, strangers_s: float
) -> dict[str, Any]:
    store = RegistryStore()
    names = [f"soak/app{i}" for i in range(repositories)]
    for name in names:
        store.create_repository(name)
    rules = [{"rulePriority": 1, "selection": {"tagStatus": "any", "countType":
             "imageCountMoreThan", "countNumber": KEEP}, "action": {"type": "expire"}}]  # fmt: skip
    doc = {"repositories": [{"match": "soak/*", "rules": rules}],
           "protect": {"newer_than": "0s", "in_use": False}}  # fmt: skip
    policy = parse_policy_file(doc, "bench")
    async with running(store) as url:
        settings = EngineSettings("bench", regions=("us-east-1",), endpoint_url=url)
        keys = wiring.Credentials("bench", "bench")  # the emulator checks no credentials
        async with wiring.open_engine(settings, policy, "serve", credentials=keys) as engine:
            app = make_app(Deps(pruner=EnginePruner(engine, policy), auth=TokenAuth(TOKEN)))
            runner = ReceiverRunner(app)
            await runner.setup()
            try:
                await web.TCPSite(runner, "127.0.0.1", 0).start()
                host, port = runner.addresses[0][:2]
                base = f"http://{host}:{port}"
                soak = await _soak(store, base, names, seconds, rate)
                soak["strangers"] = await _strangers(base, strangers, strangers_s)
            finally:
                await runner.cleanup()
    wrong = [n for n in names if len(store.repos[n].images) > KEEP]
    soak["repositories_over_keep"] = len(wrong)
    return soak


async def _soak(
    store: RegistryStore, base: str, names: list[str], seconds: float, rate: float
) -> dict[str, Any]:
    answers: list[float] = []
    statuses: dict[int, int] = {}
    probes: list[float] = []
    rss = [rss_mb()]
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    async with aiohttp.ClientSession(base, headers={"X-Api-Key": TOKEN}) as http:
        prober = asyncio.create_task(_probe(http, probes, end))
        sent = 0
        while loop.time() < end:
            name = names[sent % len(names)]
            pushed = datetime.now(UTC) - timedelta(seconds=1)
            text = mf.make_manifest(f"{name}-{sent}")
            digest = store.put_image(name, text, tag="latest", pushed_at=pushed)
            started = time.perf_counter()
            async with http.post("/events", json=event(name, digest)) as answer:
                statuses[answer.status] = statuses.get(answer.status, 0) + 1
            answers.append(time.perf_counter() - started)
            sent += 1
            if sent % max(1, int(rate * seconds / 2)) == 0:
                rss.append(rss_mb())
            await asyncio.sleep(max(0.0, 1 / rate - answers[-1]))
        await prober
    rss.append(rss_mb())
    return {
        "seconds": seconds,
        "events": len(answers),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "answer_p50_ms": _ms(statistics.median(answers)),
        "answer_p99_ms": _ms(_percentile(answers, 0.99)),
        "healthz_p99_ms": _ms(_percentile(probes, 0.99)),
        "rss_mb": [round(r, 1) for r in rss],
    }


async def _probe(http: aiohttp.ClientSession, probes: list[float], end: float) -> None:
    loop = asyncio.get_running_loop()
    while loop.time() < end:
        started = time.perf_counter()
        async with http.get("/healthz") as answer:
            await answer.read()
        probes.append(time.perf_counter() - started)
        await asyncio.sleep(0.1)


async def _strangers(base: str, clients: int, seconds: float) -> dict[str, Any]:
    body = gzip.compress(bytes(250 * 1024 * 1024), compresslevel=9)
    stop = asyncio.Event()
    refused: list[int] = []

    async def stranger() -> None:
        async with aiohttp.ClientSession(base) as http:
            while not stop.is_set():
                headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
                async with http.post("/events", data=body, headers=headers) as answer:
                    refused.append(answer.status)

    tasks = [asyncio.create_task(stranger()) for _ in range(clients)]
    probes: list[float] = []
    async with aiohttp.ClientSession(base) as http:
        await _probe(http, probes, asyncio.get_running_loop().time() + seconds)
    stop.set()
    await asyncio.gather(*tasks)
    return {
        "clients": clients,
        "body_kb": round(len(body) / 1024),
        "bodies_refused": len(refused),
        "statuses": sorted(set(refused)),
        "healthz_p50_ms": _ms(statistics.median(probes)),
        "healthz_p99_ms": _ms(_percentile(probes, 0.99)),
    }


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q * len(ordered) + 0.5)))
    return ordered[rank - 1]
