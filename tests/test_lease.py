"""Repository Leases against kmock's Kubernetes emulator (`tests.support.kube.LeaseServer`),
via the real kubernetes-asyncio client."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import kmock
import pytest
from kubernetes_asyncio import client

from cleaner.coordination.lease import lease_name, repository_lease
from cleaner.errors import ClusterError, LeaseBusy, LeaseLost
from tests.support.kube import LEASES, NS, LeaseServer

DNS_1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


@pytest.fixture
async def server() -> AsyncIterator[tuple[LeaseServer, str]]:
    async with LeaseServer() as emulator, kmock.Server(emulator) as http:
        emulator.resources[LEASES] = {}
        yield emulator, str(http.url).rstrip("/")


@pytest.fixture
async def api(server: tuple[LeaseServer, str]) -> AsyncIterator[client.ApiClient]:
    async with client.ApiClient(client.Configuration(host=server[1])) as api_client:
        yield api_client


def creates(emulator: LeaseServer) -> int:
    return sum(1 for r in emulator._requests if r.resource == LEASES and r.method == "POST")


@pytest.mark.parametrize(
    "repository",
    ["team/app", "Team_App", "a" * 300, "x/../y", "___", "pull-through/docker.io/library/nginx"],
)
def test_lease_names_are_short_valid_and_unique(repository: str) -> None:
    name = lease_name(repository)
    assert DNS_1123_SUBDOMAIN.fullmatch(name), name
    assert len(name) <= 63
    assert name.startswith("ecr-cleaner-")
    assert lease_name(repository + "x") != name


def test_names_that_slug_alike_still_differ() -> None:
    assert len({lease_name(n) for n in ("team/app", "team.app", "team-app", "team_app")}) == 4


async def test_two_prunes_of_one_repository_serialise(
    server: tuple[LeaseServer, str], api: client.ApiClient
) -> None:
    emulator, _ = server
    spans: dict[str, tuple[float, float]] = {}
    loop = asyncio.get_running_loop()

    async def prune(holder: str, delay: float) -> None:
        await asyncio.sleep(delay)
        async with repository_lease(api, NS, "team/app", holder, duration_s=3, wait_s=5):
            start = loop.time()
            await asyncio.sleep(0.6)
            spans[holder] = (start, loop.time())

    await asyncio.gather(prune("first", 0), prune("second", 0.1))

    assert spans["second"][0] >= spans["first"][1], "the second prune ran inside the first"
    spec = emulator.lease("team/app")["spec"]
    assert spec["holderIdentity"] is None, "released after the second prune"
    assert spec["leaseTransitions"] == 1


async def test_other_repositories_do_not_wait(api: client.ApiClient) -> None:
    async with repository_lease(api, NS, "team/app", "a", duration_s=3, wait_s=0):
        async with repository_lease(api, NS, "team/web", "b", duration_s=3, wait_s=0):
            pass


async def test_a_held_lease_makes_the_second_prune_busy(
    server: tuple[LeaseServer, str], api: client.ApiClient
) -> None:
    emulator, _ = server
    emulator.put_lease("team/app", "receiver-0-abc", datetime.now(UTC), duration_s=30)
    with pytest.raises(LeaseBusy, match="receiver-0-abc") as caught:
        async with repository_lease(api, NS, "team/app", "cron", duration_s=3, wait_s=0.3):
            pytest.fail("entered a lease someone else holds")
    assert caught.value.holder == "receiver-0-abc"
    assert emulator.lease("team/app")["spec"]["holderIdentity"] == "receiver-0-abc"


async def test_an_expired_lease_is_taken_over(
    server: tuple[LeaseServer, str], api: client.ApiClient
) -> None:
    emulator, _ = server
    crashed = datetime.now(UTC) - timedelta(minutes=5)
    emulator.put_lease("team/app", "crashed-pod", crashed, duration_s=60)
    async with repository_lease(api, NS, "team/app", "cron", duration_s=3, wait_s=0):
        spec = emulator.lease("team/app")["spec"]
        assert spec["holderIdentity"] == "cron"
        assert spec["leaseTransitions"] == 1


async def test_a_409_on_create_rereads_instead_of_retrying(
    server: tuple[LeaseServer, str], api: client.ApiClient
) -> None:
    emulator, _ = server
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    spec = {"holderIdentity": "winner", "leaseDurationSeconds": 30, "renewTime": now}
    emulator.rival = {"metadata": {"name": lease_name("team/app"), "namespace": NS}, "spec": spec}

    with pytest.raises(LeaseBusy, match="winner"):
        async with repository_lease(api, NS, "team/app", "loser", duration_s=3, wait_s=0.3):
            pytest.fail("entered a lease the rival won")
    assert creates(emulator) == 1, "a create that lost the race must not be sent again"


async def test_the_lease_is_renewed_while_the_prune_runs(
    server: tuple[LeaseServer, str], api: client.ApiClient
) -> None:
    emulator, _ = server
    async with repository_lease(api, NS, "team/app", "slow", duration_s=1, wait_s=0):
        first = emulator.lease("team/app")["spec"]["renewTime"]
        await asyncio.sleep(1.3)  # longer than the lease lasts without renewal
        assert emulator.lease("team/app")["spec"]["renewTime"] > first
        with pytest.raises(LeaseBusy):
            async with repository_lease(api, NS, "team/app", "eager", duration_s=1, wait_s=0):
                pytest.fail("took over a lease that is being renewed")


async def test_a_lost_lease_stops_the_prune(
    server: tuple[LeaseServer, str], api: client.ApiClient
) -> None:
    emulator, _ = server
    finished = False
    with pytest.raises(LeaseLost):
        async with repository_lease(api, NS, "team/app", "victim", duration_s=1, wait_s=0):
            emulator.put_lease("team/app", "usurper", datetime.now(UTC), duration_s=30)
            await asyncio.sleep(2)
            finished = True
    assert not finished
    assert emulator.lease("team/app")["spec"]["holderIdentity"] == "usurper", "not released"


async def test_an_unreachable_api_is_a_cluster_error() -> None:
    configuration = client.Configuration(host="http://127.0.0.1:9")
    async with client.ApiClient(configuration) as api_client:
        with pytest.raises(ClusterError, match="read lease"):
            async with repository_lease(api_client, NS, "team/app", "x", wait_s=0):
                pytest.fail("entered without a lease")
