from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cleaner.engine import Shard, SweepRequest, run
from cleaner.planning.model import ErrorKind, Image, Verdict
from cleaner.planning.policy_file import parse_policy_file
from tests.support.fakes import FakeRegistry
from tests.support.policies import keep_newest_rule

NOW = datetime(2026, 11, 1, tzinfo=UTC)
KEEP_2 = parse_policy_file({"rules": [keep_newest_rule(2)]})


def images(count: int, prefix: str = "a") -> list[Image]:
    return [
        Image(
            digest=f"sha256:{prefix}{i:063x}"[:71],
            tags=(f"build-{i}",),
            pushed_at=NOW - timedelta(days=i),
            size=10,
        )
        for i in range(count)
    ]


async def test_dry_run_plans_and_deletes_nothing() -> None:
    registry = FakeRegistry({"app": images(5)})
    report = await run(registry, SweepRequest(policy=KEEP_2, now=NOW, apply=False))
    assert report.dry_run
    assert [c[0] for c in registry.calls] == ["list"]
    (repo,) = report.repositories
    assert len(repo.plan.expire) == 3 and repo.deleted == ()


async def test_sweep_deletes_the_oldest_beyond_the_count() -> None:
    registry = FakeRegistry({"app": images(5)})
    report = await run(registry, SweepRequest(policy=KEEP_2, now=NOW, apply=True))
    assert report.ok
    assert [i.tags for i in registry.store["app"]] == [("build-0",), ("build-1",)]


async def test_deletes_go_in_batches_of_at_most_100() -> None:
    registry = FakeRegistry({"app": images(252)})
    await run(registry, SweepRequest(policy=KEEP_2, now=NOW, apply=True))
    sizes = sorted(n for op, _, n in registry.calls if op == "delete")
    assert sizes == [50, 100, 100]


async def test_one_failing_repository_does_not_stop_the_others() -> None:
    registry = FakeRegistry({"bad": images(5, "b"), "good": images(5)}, fail_listing={"bad"})
    report = await run(registry, SweepRequest(policy=KEEP_2, now=NOW, apply=True))
    by_name = {r.repository: r for r in report.repositories}
    assert "ServerException" in (by_name["bad"].error or "")
    assert by_name["bad"].error_kind is ErrorKind.REGISTRY
    assert len(by_name["good"].deleted) == 3
    assert not report.ok


async def test_per_image_failures_are_data_not_crashes() -> None:
    repo = images(5)
    registry = FakeRegistry({"app": repo}, refuse={repo[4].digest: "KmsError"})
    report = await run(registry, SweepRequest(policy=KEEP_2, now=NOW, apply=True))
    (result,) = report.repositories
    assert [f.code for f in result.failed] == ["KmsError"]
    assert len(result.deleted) == 2 and not report.ok


async def test_a_whole_batch_failing_is_reported_per_digest() -> None:
    registry = FakeRegistry({"app": images(5)}, fail_batches=True)
    report = await run(registry, SweepRequest(policy=KEEP_2, now=NOW, apply=True))
    (result,) = report.repositories
    assert {f.code for f in result.failed} == {"ServerException"} and len(result.failed) == 3


async def test_a_child_refused_by_its_index_is_reported_as_kept_not_failed() -> None:
    repo = images(5)
    registry = FakeRegistry({"app": repo}, refuse={repo[3].digest: "ImageReferencedByManifestList"})
    report = await run(registry, SweepRequest(policy=KEEP_2, now=NOW, apply=True))
    (result,) = report.repositories
    assert report.ok and result.failed == ()
    decision = next(d for d in result.plan.decisions if d.image.digest == repo[3].digest)
    assert decision.verdict is Verdict.KEEP and "index" in decision.reason


async def test_named_repositories_only_and_missing_one_is_an_error() -> None:
    registry = FakeRegistry({"a": images(5), "b": images(5)})
    request = SweepRequest(policy=KEEP_2, now=NOW, apply=True, repositories=("a", "nope"))
    report = await run(registry, request)
    assert [r.repository for r in report.repositories] == ["a", "nope"]
    assert report.repositories[1].error and len(registry.store["b"]) == 5


@pytest.mark.parametrize("limit", [1, 3])
async def test_concurrency_never_exceeds_the_limit(limit: int) -> None:
    registry = FakeRegistry({f"r{i}": images(250, str(i)) for i in range(6)}, delay=0.002)
    await run(registry, SweepRequest(policy=KEEP_2, now=NOW, apply=True, concurrency=limit))
    assert registry.max_in_flight == limit


def test_shards_split_repositories_into_disjoint_covering_sets() -> None:
    names = [f"team-{i}/app" for i in range(400)]
    owners = [[s for s in range(4) if Shard(s, 4).owns(n)] for n in names]
    assert all(len(o) == 1 for o in owners)
    sizes = [sum(o == [s] for o in owners) for s in range(4)]
    assert min(sizes) > 60  # a stable hash spreads them; no shard is starved


async def test_a_sharded_sweep_prunes_only_its_own_repositories() -> None:
    registry = FakeRegistry({f"r{i}": images(3, str(i % 10)) for i in range(20)})
    shard = Shard(1, 3)
    report = await run(registry, SweepRequest(policy=KEEP_2, now=NOW, apply=True, shard=shard))
    assert {r.repository for r in report.repositories} == {
        f"r{i}" for i in range(20) if shard.owns(f"r{i}")
    }


@pytest.mark.parametrize(("index", "count"), [(3, 3), (-1, 2), (0, 0)])
def test_a_shard_outside_its_range_is_refused(index: int, count: int) -> None:
    with pytest.raises(ValueError, match="shard"):
        Shard(index, count)


async def test_the_max_deletions_brake_is_a_safety_failure_that_deletes_nothing() -> None:
    registry = FakeRegistry({"app": images(5)})
    entry = {"match": "*", "rules": [keep_newest_rule(2)]}
    braked = parse_policy_file({"repositories": [entry], "safety": {"max_deletions": 2}})
    report = await run(registry, SweepRequest(policy=braked, now=NOW, apply=True))
    (result,) = report.repositories
    assert result.error_kind is ErrorKind.SAFETY and result.deleted == ()
