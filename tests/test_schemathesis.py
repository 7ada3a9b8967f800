"""Schemathesis against the receiver's own /openapi.json.

The real app, the real engine and the emulator run in a background thread with their own
event loop, on a real port, because schemathesis calls the API synchronously (requests).
Every documented operation gets generated requests, valid and invalid ones, with the token,
and the answers must be no 5xx, a documented status code, a documented content type, a body
matching the documented schema, and the documented headers. `ignored_auth` also replays
each authenticated operation without credentials and requires a 401.
"""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    ignored_auth,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from cleaner.emulator import RegistryStore, make_manifest, running
from cleaner.engine import Engine
from cleaner.receiver.auth import TokenAuth
from cleaner.receiver.http import Deps, make_app
from cleaner.receiver.openapi import openapi_document
from cleaner.receiver.pruner import EnginePruner
from cleaner.receiver.scheduler import SchedulerSettings
from cleaner.registries.ecr import EcrRegistry
from tests.support.backends import REGION
from tests.support.policies import keep_newest_everywhere

TOKEN = "schemathesis-2b7e151628aed2a6abf7158809cf4f3c"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    ignored_auth,
]
POLICY = keep_newest_everywhere(2)


@asynccontextmanager
async def receiver(store: RegistryStore) -> AsyncIterator[str]:
    """The app with the real engine against the emulator, on a free port; yields its URL."""
    async with AsyncExitStack() as stack:
        url = await stack.enter_async_context(running(store))
        registry = await stack.enter_async_context(
            # Keys passed in: this runs beside the tests, outside their patched environment.
            EcrRegistry.connect(region=REGION, endpoint_url=url, access_key="a", secret_key="s")
        )
        deps = Deps(
            pruner=EnginePruner(Engine(registry), POLICY),
            auth=TokenAuth(TOKEN),
            schedule=SchedulerSettings(debounce_s=0.01),
            drain_timeout_s=5,
        )
        runner = web.AppRunner(make_app(deps), access_log=None)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"


class Background:
    """An event loop in a thread, serving the receiver until `stop`."""

    def __init__(self, store: RegistryStore) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self._context = receiver(store)
        self.url = self._run(self._context.__aenter__())

    def _run(self, coroutine: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def stop(self) -> None:
        try:
            self._run(self._context.__aexit__(None, None, None))
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, RegistryStore]]:
    """One receiver for every operation's test (a few repositories of a few images)."""
    store = RegistryStore()
    now = datetime.now(UTC)
    for name in ("app", "team/web"):
        store.create_repository(name)
        for age in range(4):
            store.put_image(
                name, make_manifest(f"{name}-{age}"), tag=f"v{age}", pushed_at=now - timedelta(age)
            )
    background = Background(store)
    try:
        yield background.url, store
    finally:
        background.stop()


def test_the_document_under_test_is_the_one_served(served: tuple[str, RegistryStore]) -> None:
    url, _ = served
    with urllib.request.urlopen(f"{url}/openapi.json", timeout=10) as response:  # noqa: S310
        assert json.load(response) == openapi_document()


# Loaded from the function that /openapi.json serves (checked just above): schemathesis
# makes one test per operation at collection time, before any server runs.
schema = schemathesis.openapi.from_dict(openapi_document())


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_the_receiver_does_what_its_openapi_document_says(
    case: Any, served: tuple[str, RegistryStore]
) -> None:
    url, _ = served
    case.call_and_validate(
        base_url=url,
        headers={"Authorization": f"Bearer {TOKEN}"},
        checks=CHECKS,
        timeout=30,
    )
