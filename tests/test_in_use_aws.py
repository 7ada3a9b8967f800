"""In use beyond Kubernetes: ECS, Lambda, App Runner and Batch keep what they run or will run.

Through the CLI against moto where moto is faithful (task definitions, services, Lambda
`ImageUri`), and against `tests.support.aws_fake` where it is not (task and revision
digests, Lambda's resolved digest, App Runner). Every source that cannot answer fails the
run closed.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from cleaner.clients.retry import Backoff
from cleaner.errors import InUseError
from cleaner.in_use import apprunner, aws_lambda, batch, ecs
from cleaner.in_use.aws import Account
from cleaner.in_use.snapshots import Refreshing
from cleaner.planning.policy_file import parse_policy_file
from cleaner.planning.references import InUse
from cleaner.planning.sources import AppRunnerSection, BatchSection, EcsSection, LambdaSection
from tests.support.aws_fake import AwsFake
from tests.support.backends import ACCOUNT, REGION, Backend, EmulatorBackend, MotoBackend
from tests.support.cli import run_cli
from tests.support.policies import keep_newest_rule

NOW = datetime.now(UTC)
REGISTRY = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
QUICK = Backoff(attempts=2, base_s=0.01)


def seed(backend: Backend, repository: str = "app", count: int = 6) -> list[str]:
    """`count` images pushed a day apart, newest first, tagged v0 (newest) .. v5."""
    backend.create_repository(repository)
    return [
        backend.push(repository, [f"v{i}"], NOW - timedelta(days=i + 1), seed=f"{repository}{i}")
        for i in range(count)
    ]


def policy_file(tmp_path: Path, **sections: Any) -> str:
    doc = {
        "repositories": [{"match": "*", "rules": [keep_newest_rule(1)]}],
        "protect": {"newer_than": "0s", "in_use": "auto"},
        **sections,
    }
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(doc))
    return str(path)


def reasons(out: str) -> dict[str, str]:
    (repository,) = json.loads(out)["repositories"]
    return {i["tags"][0]: i["reason"] for i in repository["keep"] + repository["expire"]}


def verdicts(out: str) -> dict[str, str]:
    (repository,) = json.loads(out)["repositories"]
    return {i["tags"][0]: verdict for verdict in ("keep", "expire") for i in repository[verdict]}


# --- with moto: what moto serves faithfully ---------------------------------------------------


@pytest.fixture
def moto_aws(moto: MotoBackend, monkeypatch: pytest.MonkeyPatch) -> MotoBackend:
    """moto for every AWS service the sources read (ECR is pointed at by --endpoint-url)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto.endpoint_url)
    return moto


def deploy_on_moto(moto: MotoBackend, digests: list[str]) -> None:
    """A service whose task definition names v3 by tag and a sidecar pinned to v4's digest;
    a Lambda function deployed from v5 by tag."""
    session = boto3.Session(region_name=REGION)
    ecs_client = session.client("ecs", endpoint_url=moto.endpoint_url)
    ecs_client.create_cluster(clusterName="prod")
    definition = ecs_client.register_task_definition(
        family="api",
        containerDefinitions=[
            {"name": "api", "image": f"{REGISTRY}/app:v3", "memory": 128},
            {"name": "proxy", "image": f"{REGISTRY}/app@{digests[4]}", "memory": 64},
        ],
    )["taskDefinition"]["taskDefinitionArn"]
    ecs_client.create_service(cluster="prod", serviceName="api", taskDefinition=definition,
                              desiredCount=1)  # fmt: skip
    iam = session.client("iam", endpoint_url=moto.endpoint_url)
    role = iam.create_role(RoleName="fn", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    session.client("lambda", endpoint_url=moto.endpoint_url).create_function(
        FunctionName="worker", Role=role, PackageType="Image",
        Code={"ImageUri": f"{REGISTRY}/app:v5"},
    )  # fmt: skip


async def test_with_ecs_and_lambda_sections_their_images_are_kept_and_survive_a_sweep(
    tmp_path: Path, moto_aws: MotoBackend
) -> None:
    digests = seed(moto_aws)
    deploy_on_moto(moto_aws, digests)
    argv = ["--endpoint-url", moto_aws.endpoint_url, "--output", "json"]
    with_sources = policy_file(tmp_path, ecs={}, **{"lambda": {}})

    code, out = await run_cli("plan", "--policy", with_sources, *argv)
    assert code == 0, out
    why = reasons(out)
    assert why["v3"].startswith("protected: in use: ecs:prod/service/api (task definition api:1)")
    assert why["v4"].startswith("protected: in use: ecs:prod/service/api")  # the digest sidecar
    assert why["v5"].startswith("protected: in use: lambda:worker:$LATEST")
    assert {tag for tag, v in verdicts(out).items() if v == "expire"} == {"v1", "v2"}

    code, out = await run_cli("sweep", "--policy", with_sources, *argv)
    assert code == 0, out
    assert moto_aws.digests("app") == {digests[0], digests[3], digests[4], digests[5]}


async def test_without_the_sections_the_same_images_are_expired(
    tmp_path: Path, moto_aws: MotoBackend
) -> None:
    digests = seed(moto_aws)
    deploy_on_moto(moto_aws, digests)
    code, out = await run_cli("plan", "--policy", policy_file(tmp_path), "--endpoint-url",
                              moto_aws.endpoint_url, "--output", "json")  # fmt: skip
    assert code == 0, out
    assert {tag for tag, v in verdicts(out).items() if v == "expire"} == {
        f"v{i}" for i in range(1, 6)
    }


def test_an_unreachable_ecs_endpoint_deletes_nothing_and_exits_1(
    tmp_path: Path, moto: MotoBackend
) -> None:
    digests = seed(moto)
    env = {**os.environ, "AWS_ENDPOINT_URL_ECS": "http://127.0.0.1:9"}
    done = subprocess.run(
        [sys.executable, "-m", "cleaner", "sweep", "--policy", policy_file(tmp_path, ecs={}),
         "--endpoint-url", moto.endpoint_url, "--output", "json"],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    (repository,) = json.loads(done.stdout)["repositories"]
    error = repository["error"]
    assert error.startswith(f"in-use source ecs:{REGION}: ListClusters: Could not connect"), error
    assert moto.digests("app") == set(digests)


# --- against the fake: the digest paths, revisions, schedules, App Runner, Batch -------------


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[AwsFake]:
    aws = AwsFake()
    async with aws.running() as url:
        monkeypatch.setenv("AWS_ENDPOINT_URL", url)
        yield aws


def who_uses(in_use: InUse) -> dict[str, set[str]]:
    """`app:v1` or `app@<digest>` -> who."""
    found: dict[str, set[str]] = {}
    for use in in_use.uses:
        key = (
            f"{use.ref.path}@{use.ref.digest}"
            if use.ref.digest
            else f"{use.ref.path}:{use.ref.tag}"
        )
        found.setdefault(key, set()).add(use.who)
    return found


DEFAULTS = EcsSection()


async def ecs_snapshot(section: EcsSection = DEFAULTS) -> InUse:
    async with ecs.open_source(section, Account((REGION,)), watch=False, backoff=QUICK) as source:
        return await source.snapshot()


async def test_a_running_task_whose_tag_moved_is_protected_through_its_digest(
    fake: AwsFake,
) -> None:
    definition = fake.add_task_definition("api", f"{REGISTRY}/app:v1")
    old = "sha256:" + "a" * 64
    fake.add_task("prod", definition, [(f"{REGISTRY}/app:v1", old)], group="service:api")
    found = who_uses(await ecs_snapshot())
    assert any(w.startswith("ecs:prod/service:api (task ") for w in found[f"app@{old}"])
    assert "app:v1" in found  # the tag too, from the task and its definition


async def test_a_sidecar_pinned_by_digest_in_a_task_definition_is_protected(fake: AwsFake) -> None:
    pinned = "sha256:" + "b" * 64
    definition = fake.add_task_definition("api", f"{REGISTRY}/app:v2", f"{REGISTRY}/envoy@{pinned}")
    fake.add_service("prod", "api", [("PRIMARY", definition)])
    found = who_uses(await ecs_snapshot())
    assert "ecs:prod/service/api (task definition api:1)" in found[f"envoy@{pinned}"]


async def test_a_service_rolling_back_keeps_both_deployments_and_their_resolved_digests(
    fake: AwsFake,
) -> None:
    good = fake.add_task_definition("api", f"{REGISTRY}/app:v1")
    bad = fake.add_task_definition("api", f"{REGISTRY}/app:v2")
    d1, d2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64
    fake.add_service(
        "prod", "api", [("PRIMARY", good), ("ACTIVE", bad)],
        revisions=[[(f"{REGISTRY}/app:v1", d1)], [(f"{REGISTRY}/app:v2", d2)]],
    )  # fmt: skip
    found = who_uses(await ecs_snapshot(EcsSection(task_definition_revisions=0)))
    assert found["app:v1"] == {"ecs:prod/service/api (task definition api:1)",
                               "ecs:prod/service/api (revision)"}  # fmt: skip
    assert "ecs:prod/service/api (task definition api:2)" in found["app:v2"]
    assert found[f"app@{d1}"] == found[f"app@{d2}"] == {"ecs:prod/service/api (revision)"}


async def test_the_newest_revisions_of_a_family_are_rollback_targets(fake: AwsFake) -> None:
    for i in range(7):
        fake.add_task_definition("api", f"{REGISTRY}/app:r{i + 1}")
    fake.add_task_definition("api-worker", f"{REGISTRY}/worker:w1")  # a family the prefix matches
    found = who_uses(await ecs_snapshot(EcsSection(task_definition_revisions=3)))
    kept = {key for key in found if key.startswith("app:")}
    assert kept == {"app:r5", "app:r6", "app:r7"}
    assert found["app:r7"] == {"ecs:task-definition/api:7 (newest 3 of api)"}
    assert "worker:w1" in found


async def test_scheduled_tasks_of_rules_and_schedules_are_protected(fake: AwsFake) -> None:
    nightly = fake.add_task_definition("nightly", f"{REGISTRY}/jobs:nightly")
    hourly = fake.add_task_definition("hourly", f"{REGISTRY}/jobs:hourly")
    fake.rules.append(("default", "nightly-report", nightly))
    fake.rules.append(("ops-bus", "on-alarm", hourly))
    fake.schedules.append(("batchjobs", "every-hour", "hourly"))
    found = who_uses(await ecs_snapshot(EcsSection(task_definition_revisions=0)))
    assert found["jobs:nightly"] == {"ecs:rule/nightly-report (task definition nightly:1)"}
    assert found["jobs:hourly"] == {
        "ecs:rule/on-alarm (task definition hourly:1)",
        "ecs:schedule/batchjobs/every-hour (task definition hourly)",
    }


async def test_a_lambda_alias_protects_the_tag_and_the_resolved_digest(fake: AwsFake) -> None:
    live = "sha256:" + "c" * 64
    latest = "sha256:" + "d" * 64
    fake.add_function(
        "api",
        versions={
            "$LATEST": (f"{REGISTRY}/fn:main", f"{REGISTRY}/fn@{latest}"),
            "4": (f"{REGISTRY}/fn:v4", f"{REGISTRY}/fn@{live}"),
            "3": (f"{REGISTRY}/fn:v3", f"{REGISTRY}/fn@{'sha256:' + '3' * 64}"),
            "2": (f"{REGISTRY}/fn:v2", f"{REGISTRY}/fn@{'sha256:' + '2' * 64}"),
        },
        aliases={"live": ("4", {})},
    )
    fake.add_function("zipped", {"$LATEST": ("", "")}, package_type="Zip")
    section = LambdaSection(versions=1)
    async with aws_lambda.open_source(
        section, Account((REGION,)), watch=False, backoff=QUICK
    ) as source:
        found = who_uses(await source.snapshot())
    assert found[f"fn@{live}"] == {"lambda:api:live", "lambda:api:4 (newest 1)"}
    assert found["fn:v4"] == found[f"fn@{live}"]
    assert found[f"fn@{latest}"] == {"lambda:api:$LATEST"}
    assert "fn:v3" not in found and "fn:v2" not in found
    assert fake.calls["lambda:GetFunction"] == 2  # $LATEST and 4; the zip function is skipped


async def test_app_runner_and_batch_are_protected_by_reference(fake: AwsFake) -> None:
    fake.apprunner.append(("web", f"{REGISTRY}/web:stable"))
    fake.job_definitions.append({
        "jobDefinitionName": "etl", "revision": 3,
        "containerProperties": {"image": f"{REGISTRY}/etl:v7"},
    })  # fmt: skip
    fake.job_definitions.append({
        "jobDefinitionName": "train", "revision": 1,
        "eksProperties": {"podProperties": {"containers": [{"image": f"{REGISTRY}/train:gpu"}]}},
    })  # fmt: skip
    async with apprunner.open_source(AppRunnerSection(), Account((REGION,)), watch=False) as source:
        assert who_uses(await source.snapshot()) == {"web:stable": {"apprunner:web"}}
    async with batch.open_source(BatchSection(), Account((REGION,)), watch=False) as source:
        assert who_uses(await source.snapshot()) == {
            "etl:v7": {"batch:etl:3"}, "train:gpu": {"batch:train:1"},
        }  # fmt: skip


@pytest.mark.parametrize(
    ("sections", "failing"),
    [
        ({"ecs": {}}, "ecs:ListClusters"),
        ({"ecs": {}}, "ecs:DescribeTaskDefinition"),
        ({"ecs": {}}, "events:ListRules"),
        ({"ecs": {}}, "scheduler:GetSchedule"),
        ({"lambda": {}}, "lambda:GetFunction"),
        ({"apprunner": {}}, "apprunner:ListServices"),
        ({"batch": {}}, "batch:DescribeJobDefinitions"),
    ],
)
async def test_each_source_fails_closed_naming_itself_and_the_call(
    tmp_path: Path, fake: AwsFake, emulator: EmulatorBackend, sections: dict[str, Any], failing: str
) -> None:
    digests = seed(emulator)
    definition = fake.add_task_definition("api", f"{REGISTRY}/app:v1")
    fake.rules.append(("default", "r", definition))
    fake.schedules.append(("default", "s", definition))
    fake.add_function("fn", {"$LATEST": (f"{REGISTRY}/app:v1", f"{REGISTRY}/app@{digests[1]}")})
    fake.cluster("prod")
    fake.fail[failing] = ("AccessDeniedException", 400)
    policy = policy_file(tmp_path, **sections)
    code, out = await run_cli("sweep", "--policy", policy, "--endpoint-url",
                              emulator.endpoint_url, "--output", "json")  # fmt: skip
    assert code == 1
    (repository,) = json.loads(out)["repositories"]
    operation = failing.split(":")[1]
    assert operation in repository["error"] and "AccessDeniedException" in repository["error"]
    assert emulator.digests("app") == set(digests)  # nothing deleted


async def test_every_configured_source_must_answer(
    tmp_path: Path, fake: AwsFake, emulator: EmulatorBackend
) -> None:
    """With two sources, one failing is enough to delete nothing: the merged source."""
    digests = seed(emulator)
    fake.fail["batch:DescribeJobDefinitions"] = ("AccessDeniedException", 400)
    policy = policy_file(tmp_path, ecs={}, batch={})
    code, out = await run_cli("sweep", "--policy", policy, "--endpoint-url",
                              emulator.endpoint_url, "--output", "json")  # fmt: skip
    assert code == 1
    assert "in-use source batch:" in json.loads(out)["repositories"][0]["error"]
    assert emulator.digests("app") == set(digests)


# --- the receiver's view, and the policy file ------------------------------------------------


async def test_the_receivers_snapshot_refreshes_and_fails_closed_when_too_old() -> None:
    now = [0.0]
    looks: list[int] = []
    broken = False

    async def look() -> InUse:
        looks.append(1)
        if broken:
            raise InUseError("ListClusters: AccessDeniedException: refused", source="ecs")
        return InUse()

    source = Refreshing("ecs:test", look, refresh_s=3600, max_age_s=10, clock=lambda: now[0])
    with pytest.raises(InUseError, match="not listed yet"):
        await source.snapshot()
    await source.refresh()
    assert await source.snapshot() == InUse()
    broken, now[0] = True, 5.0
    await source.refresh()  # fails: the last good snapshot still serves, for its max age
    assert await source.snapshot() == InUse()
    now[0] = 11.0
    with pytest.raises(InUseError, match=r"older than 10 s; last refresh: .*ListClusters"):
        await source.snapshot()
    async with source.running():  # the first look at start, then in the background
        await asyncio.sleep(0)
    assert len(looks) == 3


def test_the_sections_parse_their_options_and_refuse_typos() -> None:
    policy = parse_policy_file({
        "repositories": [{"match": "*", "rules": "ecr"}],
        "ecs": {"regions": ["eu-west-1"], "clusters": ["prod-*"], "task_definition_revisions": 2},
        "lambda": None, "batch": {},
    })  # fmt: skip
    assert policy.aws.ecs == EcsSection(("eu-west-1",), ("prod-*",), 2, True)
    assert policy.aws.lambda_ == LambdaSection()
    assert policy.aws.names() == ("ecs", "lambda", "batch")
    from cleaner.errors import PolicyError

    with pytest.raises(PolicyError, match='ecs has unknown key "cluster"'):
        parse_policy_file({"repositories": [{"match": "*", "rules": "ecr"}],
                           "ecs": {"cluster": ["x"]}})  # fmt: skip


def test_validate_names_every_source_it_reads(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("repositories: [{match: '*', rules: ecr}]\necs: {clusters: [prod]}\n"
                    "lambda: {versions: 2}\napprunner: {regions: [eu-west-1]}\n")  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "cleaner", "validate", str(path)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "ecs: the registry's region; clusters prod; newest 5 revisions" in done.stdout
    assert (
        "lambda: the registry's region; all image functions; $LATEST, aliased and the newest 2"
        in done.stdout
    )
    assert "apprunner: eu-west-1; every service" in done.stdout
