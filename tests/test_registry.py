"""Contract tests of the ECR adapter: the real aiobotocore client against emulator and moto."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import BotoCoreError, ClientError

from cleaner.clients.retry import Backoff
from cleaner.emulator import descriptor, index_manifest
from cleaner.errors import RegistryError, RepositoryNotFoundError
from cleaner.planning.model import FailureKind, Repository
from cleaner.registries.ecr import EcrRegistry
from tests.support.backends import Backend, EmulatorBackend, manifest

NOW = datetime(2026, 11, 1, 12, tzinfo=UTC)


def seed(backend: Backend, repo: str, count: int) -> list[str]:
    backend.create_repository(repo)
    return [
        backend.push(repo, [f"t{i}"], NOW - timedelta(hours=i), seed=f"{repo}{i}")
        for i in range(count)
    ]


async def test_list_images_reads_tags_times_and_sizes(backend: Backend) -> None:
    digests = seed(backend, "team/app", 3)
    async with EcrRegistry.connect(endpoint_url=backend.endpoint_url) as registry:
        images = {i.digest: i for i in await registry.images(Repository("team/app"))}
    assert set(images) == set(digests)
    first = images[digests[0]]
    assert first.tags == ("t0",)
    assert first.pushed_at == NOW and first.pushed_at.tzinfo is not None
    assert first.size > 0


async def test_list_images_follows_every_page(emulator: EmulatorBackend) -> None:
    digests = seed(emulator, "many", 2345)
    async with EcrRegistry.connect(endpoint_url=emulator.endpoint_url) as registry:
        images = await registry.images(Repository("many"))
    assert sorted(i.digest for i in images) == sorted(digests)
    assert emulator.store.calls["DescribeImages"] == 3  # pages of 1000


async def test_delete_reports_each_requested_digest(backend: Backend) -> None:
    digests = seed(backend, "app", 5)
    gone = "sha256:" + "0" * 64  # never existed: already in the wanted state
    async with EcrRegistry.connect(endpoint_url=backend.endpoint_url) as registry:
        result = await registry.delete(Repository("app"), [*digests[:3], gone])
        left = {i.digest for i in await registry.images(Repository("app"))}
    assert set(result.deleted) == {*digests[:3], gone} and result.failed == ()
    assert left == set(digests[3:])


async def test_deleting_an_untagged_image_is_confirmed(backend: Backend) -> None:
    """moto leaves deleted untagged images out of imageIds; the adapter must still know."""
    backend.create_repository("app")
    old = backend.push("app", [], NOW - timedelta(days=2), seed="old")
    backend.push("app", ["latest"], NOW, seed="new")
    async with EcrRegistry.connect(endpoint_url=backend.endpoint_url) as registry:
        untagged = [i for i in await registry.images(Repository("app")) if not i.tags]
        result = await registry.delete(Repository("app"), [old])
    assert [i.digest for i in untagged] == [old]
    assert result.deleted == (old,) and backend.digests("app") == set(backend.tags("app").values())


async def test_more_than_100_digests_is_refused_before_any_call(emulator: EmulatorBackend) -> None:
    async with EcrRegistry.connect(endpoint_url=emulator.endpoint_url) as registry:
        with pytest.raises(ValueError, match="at most 100"):
            await registry.delete(Repository("app"), [f"sha256:{i:064x}" for i in range(101)])
    assert emulator.store.calls["BatchDeleteImage"] == 0


async def test_missing_repository_is_our_error_not_botocores(backend: Backend) -> None:
    async with EcrRegistry.connect(endpoint_url=backend.endpoint_url) as registry:
        with pytest.raises(RepositoryNotFoundError) as caught:
            await registry.images(Repository("does-not-exist"))
    assert caught.value.code == "RepositoryNotFoundException"
    assert not isinstance(caught.value, ClientError | BotoCoreError)


async def test_own_rules_are_the_parsed_lifecycle_policy_or_none(backend: Backend) -> None:
    seed(backend, "app", 1)
    seed(backend, "ruled", 1)
    rule = {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 3}
    text = json.dumps(
        {"rules": [{"rulePriority": 1, "selection": rule, "action": {"type": "expire"}}]}
    )
    backend.set_lifecycle_policy("ruled", text)
    async with EcrRegistry.connect(endpoint_url=backend.endpoint_url) as registry:
        assert await registry.own_rules(Repository("app")) is None
        rules = await registry.own_rules(Repository("ruled"))
    assert rules is not None and [r.count_number for r in rules.rules] == [3]


async def test_a_repository_by_name_carries_its_uri(backend: Backend) -> None:
    seed(backend, "team/app", 1)
    seed(backend, "team/web", 1)
    async with EcrRegistry.connect(endpoint_url=backend.endpoint_url) as registry:
        with pytest.raises(RepositoryNotFoundError):
            await registry.repository("team/none")  # nothing learned yet: asked, and absent
        found = await registry.repository("team/app")
        web = await registry.repository("team/web")  # the host is known now: no call
        missing = await registry.repository("team/none")
        with pytest.raises(RepositoryNotFoundError):
            await registry.images(missing)  # a name that does not exist fails at its listing
    assert found.uri.endswith(".amazonaws.com/team/app") and found.registry_id.isdigit()
    assert web.uri == found.uri.replace("team/app", "team/web")
    if isinstance(backend, EmulatorBackend):
        assert backend.store.calls["DescribeRepositories"] == 2


async def test_manifests_are_read_100_a_call(emulator: EmulatorBackend) -> None:
    digests = seed(emulator, "app", 250)
    async with EcrRegistry.connect(endpoint_url=emulator.endpoint_url) as registry:
        texts = await registry.manifests(Repository("app"), digests)
    assert set(texts) == set(digests)
    assert emulator.store.calls["BatchGetImage"] == 3


async def test_an_index_refusal_is_a_referenced_failure(emulator: EmulatorBackend) -> None:
    digests = seed(emulator, "app", 1)
    index = emulator.push_manifest("app", index_manifest([descriptor(manifest("app0"))]), "multi")
    async with EcrRegistry.connect(endpoint_url=emulator.endpoint_url) as registry:
        result = await registry.delete(Repository("app"), digests)
    (failure,) = result.failed
    assert (
        failure.kind is FailureKind.REFERENCED and failure.code == "ImageReferencedByManifestList"
    )
    assert emulator.digests("app") == {digests[0], index}


async def test_list_image_referrers_is_paced_and_counted() -> None:
    from cleaner.emulator import RegistryStore, running

    store = RegistryStore()
    subject = EmulatorBackend(store, "")
    (digest,) = seed(subject, "app", 1)
    heard: list[tuple[str, str]] = []
    async with running(store) as url:
        async with EcrRegistry.connect(
            endpoint_url=url, on_call=lambda *call: heard.append(call)
        ) as registry:
            assert await registry.referrers(Repository("app"), digest) == []
    assert heard == [("ListImageReferrers", "ok")]


async def test_throttling_is_retried_until_it_succeeds() -> None:
    from cleaner.emulator import RegistryStore, running

    store = RegistryStore()
    store.create_repository("app")
    heard: list[tuple[str, str]] = []
    async with running(store, throttle={"DescribeImages": 20}) as url:
        async with EcrRegistry.connect(
            endpoint_url=url,
            backoff=Backoff(attempts=30),
            on_call=lambda op, outcome: heard.append((op, outcome)),
        ) as registry:
            results = await asyncio.gather(*(registry.images(Repository("app")) for _ in range(40)))
    assert all(r == [] for r in results)
    assert store.calls["DescribeImages"] >= 40
    assert heard.count(("DescribeImages", "ok")) == 40
    assert heard.count(("DescribeImages", "throttled")) == store.calls["DescribeImages"] - 40 > 0


async def test_throttling_surfaces_as_registry_error_when_retries_run_out() -> None:
    from cleaner.emulator import RegistryStore, running

    store = RegistryStore()
    store.create_repository("app")
    async with running(store, throttle={"DescribeImages": 1}) as url:
        async with EcrRegistry.connect(endpoint_url=url, backoff=Backoff(attempts=1)) as registry:
            outcomes = await asyncio.gather(
                *(registry.images(Repository("app")) for _ in range(5)), return_exceptions=True
            )
    errors = [o for o in outcomes if isinstance(o, RegistryError)]
    assert errors and all(e.code == "ThrottlingException" for e in errors)


async def test_server_errors_are_retried() -> None:
    from cleaner.emulator import RegistryStore, running

    store = RegistryStore()
    seed_store = EmulatorBackend(store, "")
    digests = seed(seed_store, "app", 300)
    async with running(store, error_rate=0.3, random_seed=7) as url:
        async with EcrRegistry.connect(endpoint_url=url) as registry:
            for start in range(0, 300, 100):
                result = await registry.delete(Repository("app"), digests[start : start + 100])
                assert result.failed == ()
    assert store.digests("app") == []


@pytest.mark.parametrize(
    "value",
    [1767225600, 1767225600.0, "1767225600", "2026-01-01T00:00:00Z", "2026-01-01T01:00:00+01:00"],
)
def test_timestamps_parse_to_utc_whatever_their_form(value: object) -> None:
    from cleaner.clients.aws import parse_timestamp

    assert parse_timestamp(value) == datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_timestamp(value).utcoffset() == timedelta(0)
