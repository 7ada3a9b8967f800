from __future__ import annotations

import asyncio
import os
import urllib.request
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from hypothesis import settings

from tests.support.backends import REGION, Backend, EmulatorBackend, MotoBackend

# `make test` (and so CI) replays the same generated examples on every run: a red build is
# then the change's doing, not a new roll of the dice. `make fuzz` explores fresh examples
# (HYPOTHESIS_PROFILE=explore); what it finds becomes a fixed test case. Loaded here, before
# the test modules, because `@settings(...)` takes its other values from the loaded profile.
settings.register_profile("replay", derandomize=True, database=None)
settings.register_profile("explore")
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "replay"))


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """Dummy credentials and no host AWS config, so no test can reach a real account."""
    for name in (
        "AWS_PROFILE",
        "AWS_REGION",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_ECR",
        "AWS_ENDPOINT_URL_ECS",
        "AWS_ENDPOINT_URL_LAMBDA",
        "AWS_ENDPOINT_URL_EVENTBRIDGE",
        "AWS_ENDPOINT_URL_SCHEDULER",
        "AWS_ENDPOINT_URL_APPRUNNER",
        "AWS_ENDPOINT_URL_BATCH",
        "AWS_SESSION_TOKEN",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # Nor a real cluster: in-use protection is "auto", on whenever a kubeconfig exists.
    for name in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "JOB_COMPLETION_INDEX"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(
        "cleaner.clients.kubernetes.DEFAULT_KUBECONFIG", str(tmp_path / "no-kubeconfig")
    )


@pytest.fixture(autouse=True)
async def no_pending_tasks() -> AsyncIterator[None]:
    """Fail any test that leaves asyncio tasks running (kopf's guard)."""
    before = asyncio.all_tasks()
    yield
    await asyncio.sleep(0)
    left = asyncio.all_tasks() - before - {asyncio.current_task()}
    assert not left, f"tasks left behind: {left}"


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def fresh_moto(moto_url: str) -> MotoBackend:
    """moto's state is per process; reset it so each test starts from an empty registry."""
    reset = urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST")  # noqa: S310
    with urllib.request.urlopen(reset, timeout=10):  # noqa: S310 - loopback test server
        pass
    return MotoBackend(moto_url)


@pytest.fixture
def moto(moto_url: str) -> MotoBackend:
    return fresh_moto(moto_url)


@pytest.fixture
async def emulator() -> AsyncIterator[EmulatorBackend]:
    from cleaner.emulator import RegistryStore, running

    store = RegistryStore()
    async with running(store) as url:
        yield EmulatorBackend(store, url)


@pytest.fixture(params=["emulator", "moto"])
async def backend(request: pytest.FixtureRequest, moto_url: str) -> AsyncIterator[Backend]:
    """The same contract test runs against our emulator and against moto."""
    if request.param == "moto":
        yield fresh_moto(moto_url)
        return
    from cleaner.emulator import RegistryStore, running

    store = RegistryStore()
    async with running(store) as url:
        yield EmulatorBackend(store, url)


@pytest.fixture(scope="session")
def distribution(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real CNCF distribution registry (Debian's docker-registry) for the session, with
    deletion enabled; each test pushes to repositories of its own."""
    from tests.support.oci import running_registry

    with running_registry(tmp_path_factory.mktemp("distribution")) as url:
        yield url
