"""The emulator over HTTP: ECR's AWS JSON 1.1 protocol, usable as any SDK's endpoint_url.

Faults (latency, throttling, injected 500s) are applied before an operation runs, so a
failed call never half-applies and a retrying client sees a consistent registry.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from cleaner.emulator.operations import OPERATIONS
from cleaner.emulator.seed import seed_store
from cleaner.emulator.store import RegistryStore
from cleaner.emulator.throttle import Throttle
from cleaner.emulator.validation import EcrError

logger = logging.getLogger(__name__)

TARGET_PREFIX = "AmazonEC2ContainerRegistry_V20150921"
CONTENT_TYPE = "application/x-amz-json-1.1"


@dataclass(slots=True)
class _Faults:
    latency_s: float
    throttle: Throttle
    error_rate: float
    rng: random.Random
    throttle_rate: float = 0.0
    """Share of calls answered ThrottlingException whatever the rate (fault tests)."""
    reset_rate: float = 0.0
    """Share of calls whose connection is dropped without an answer: half before the
    operation runs, half after it changed the state (the client cannot tell which)."""


STORE = web.AppKey("store", RegistryStore)
FAULTS = web.AppKey("faults", _Faults)


def make_app(
    store: RegistryStore,
    *,
    latency_ms: float = 0,
    throttle: Mapping[str, float] | None = None,
    error_rate: float = 0.0,
    random_seed: int | None = None,
    throttle_rate: float = 0.0,
    reset_rate: float = 0.0,
) -> web.Application:
    """An aiohttp app serving `store`; `throttle` maps operation (or "*") to calls/second."""
    if not 0.0 <= error_rate <= 1.0:
        raise ValueError(f"error_rate must be within [0, 1], got {error_rate}")
    app = web.Application(client_max_size=8 * 1024 * 1024)  # a manifest may be 4 MiB
    app[STORE] = store
    app[FAULTS] = _Faults(
        latency_ms / 1000,
        Throttle(throttle),
        error_rate,
        random.Random(random_seed),
        throttle_rate,
        reset_rate,
    )
    app.router.add_post("/", _handle)
    app.router.add_get("/_emulator/stats", _stats)
    return app


async def _handle(request: web.Request) -> web.Response:
    store, faults = request.app[STORE], request.app[FAULTS]
    prefix, _, operation = request.headers.get("X-Amz-Target", "").partition(".")
    store.calls[operation or "<missing>"] += 1
    if faults.latency_s:
        await asyncio.sleep(faults.latency_s)
    try:
        handler = OPERATIONS.get(operation) if prefix == TARGET_PREFIX else None
        if handler is None:
            raise EcrError("UnknownOperationException", f"Unknown operation '{operation}'")
        _inject_faults(store, faults, operation)
        body = _parse_body(await request.read())
        reset = faults.reset_rate and faults.rng.random() < faults.reset_rate
        if reset and faults.rng.random() < 0.5:
            return _drop(request, store, operation, "before")
        reply = _reply(200, handler(store, body))
        return _drop(request, store, operation, "after") if reset else reply
    except EcrError as e:
        return _reply(e.status, {"__type": e.code, "message": e.message}, error=e.code)
    except Exception as e:  # an emulator bug or a malformed body: answer like AWS would
        logger.exception("emulator failed on %s", operation)
        message = f"Internal emulator error: {e!r}"
        return _reply(
            500, {"__type": "ServerException", "message": message}, error="ServerException"
        )


def _inject_faults(store: RegistryStore, faults: _Faults, operation: str) -> None:
    if not faults.throttle.allow(operation):
        store.rejected[f"ThrottlingException:{operation}"] += 1
        # The real wire answer: botocore retries this code in every retry mode.
        raise EcrError("ThrottlingException", "Rate exceeded")
    if faults.throttle_rate and faults.rng.random() < faults.throttle_rate:
        store.rejected[f"ThrottlingException:{operation}"] += 1
        raise EcrError("ThrottlingException", "Rate exceeded")
    if faults.error_rate and faults.rng.random() < faults.error_rate:
        store.rejected[f"ServerException:{operation}"] += 1
        raise EcrError("ServerException", "Injected failure (emulator error_rate)", status=500)


def _drop(request: web.Request, store: RegistryStore, operation: str, when: str) -> web.Response:
    """Close the connection without answering, as a reset or a dead load balancer would."""
    store.rejected[f"ConnectionReset{when.title()}:{operation}"] += 1
    if request.transport is not None:
        request.transport.abort()
    return web.Response(status=500)  # never reaches the client: the socket is gone


def _parse_body(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise EcrError("SerializationException", "Request body is not a JSON object")
    return body


def _reply(status: int, payload: Mapping[str, Any], *, error: str | None = None) -> web.Response:
    headers = {"x-amzn-RequestId": str(uuid.uuid4())}
    if error:
        headers["x-amzn-ErrorType"] = error
    return web.Response(
        status=status,
        body=json.dumps(payload).encode(),
        content_type=CONTENT_TYPE,
        headers=headers,
    )


async def _stats(request: web.Request) -> web.Response:
    store = request.app[STORE]
    payload = {"calls": dict(store.calls), "rejected": dict(store.rejected)}
    return web.json_response(payload)


@asynccontextmanager
async def running(
    store: RegistryStore, *, host: str = "127.0.0.1", port: int = 0, **app_options: Any
) -> AsyncIterator[str]:
    """Serve `store` on a real socket and yield the endpoint URL; port 0 picks a free port."""
    runner = web.AppRunner(make_app(store, **app_options), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        yield f"http://{_url_host(bound_host)}:{bound_port}"
    finally:
        await runner.cleanup()


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


async def serve(
    host: str,
    port: int,
    *,
    seed: str = "demo",
    latency_ms: float = 0,
    throttle: Mapping[str, float] | None = None,
    error_rate: float = 0.0,
) -> None:
    """Run the emulator until cancelled (the `ecr-cleaner emulator` command)."""
    if not logging.getLogger().hasHandlers():  # run bare (no CLI logging): still show the URL
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    store = RegistryStore()
    seed_store(store, seed, datetime.now(UTC))
    options = {"latency_ms": latency_ms, "throttle": throttle, "error_rate": error_rate}
    async with running(store, host=host, port=port, **options) as url:
        images = sum(len(r.images) for r in store.repos.values())
        logger.info(
            "ECR emulator on %s (seed %r: %d repositories, %d images)",
            url,
            seed,
            len(store.repos),
            images,
        )
        logger.info("use it with: export AWS_ENDPOINT_URL_ECR=%s", url)
        await asyncio.Event().wait()
