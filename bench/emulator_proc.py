"""The emulator in its own process for the sweep benchmark, so the cleaner and the registry
do not share one event loop (the machine has 2 cores).

`python -m bench.emulator_proc SPEC.json` seeds the store from the spec, serves it, prints
one JSON line `{"url": ...}` on stdout once it listens, and runs until stdin closes.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import UTC, datetime
from typing import Any

from bench.synth import seed_repository
from cleaner.emulator import RegistryStore, running


def seed(store: RegistryStore, spec: dict[str, Any]) -> int:
    """Sweep repositories `sweep/rNNN` and their baseline twins `baseline/rNNN`."""
    now = datetime.fromtimestamp(spec["now"], UTC)
    total = 0
    for i in range(spec["repositories"]):
        total += seed_repository(store, sweep_name(i), i, spec["images"], now)
    for i in range(spec["baseline_repositories"]):
        total += seed_repository(store, baseline_name(i), i, spec["images"], now)
    return total


def sweep_name(i: int) -> str:
    return f"sweep/r{i:04d}"


def baseline_name(i: int) -> str:
    return f"baseline/r{i:04d}"


async def serve(spec: dict[str, Any]) -> None:
    started = time.perf_counter()
    store = RegistryStore()
    images = seed(store, spec)
    seeded_s = time.perf_counter() - started
    options = {"latency_ms": spec["latency_ms"], "throttle": spec["throttle"]}
    async with running(store, **options) as url:
        print(json.dumps({"url": url, "images": images, "seed_s": seeded_s}), flush=True)
        # Serve until the benchmark closes our stdin (or dies): no orphan servers.
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)


def main() -> None:
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    asyncio.run(serve(spec))


if __name__ == "__main__":
    main()
