"""Several accounts and regions in one run: the targets of `--region`, `--role-arn` and a
policy file's `targets:`.

Against moto, which keeps regions apart and puts an assumed role's resources in the account
of its ARN; an STS gate in front of moto's (`tests.support.sts_gate`) refuses the roles a
test says cannot be assumed, and counts every AssumeRole.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from cleaner.errors import ConfigError, PolicyError
from cleaner.planning.model import RepositoryReport, RunReport, Target
from cleaner.planning.policy_file import parse_policy_file
from cleaner.planning.targets import TargetEntry, resolve_targets
from cleaner.receiver.events import Ignored, PushEvent, Scope
from cleaner.receiver.routes import Route, Routed, Router, TargetsPruner, prefix_of
from tests.support.backends import ACCOUNT, REGION, MotoBackend
from tests.support.cli import run_cli
from tests.support.fakes import until
from tests.support.policies import keep_newest_rule
from tests.support.sts_gate import StsGate, sts_gate

NOW = datetime.now(UTC)
SAMPLES = Path(__file__).parent / "data" / "events"
OTHER_REGION = "eu-west-1"
MEMBER = "222222222222"
MEMBER_ROLE = f"arn:aws:iam::{MEMBER}:role/ecr-cleaner-member"
BROKEN = "333333333333"
BROKEN_ROLE = f"arn:aws:iam::{BROKEN}:role/ecr-cleaner-member"


def seed(backend: MotoBackend, repository: str = "app", count: int = 3) -> list[str]:
    """`count` images a day apart, newest first; the policy keeps the newest one."""
    backend.create_repository(repository)
    return [
        backend.push(
            repository,
            [f"v{i}"],
            NOW - timedelta(days=i + 1),
            seed=f"{backend.account}{backend.region}{i}",
        )
        for i in range(count)
    ]


def policy_file(tmp_path: Path, **extra: Any) -> str:
    doc = {
        "repositories": [{"match": "*", "rules": [keep_newest_rule(1)]}],
        "protect": {"newer_than": "0s", "in_use": False},
        **extra,
    }
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(doc))
    return str(path)


@pytest.fixture
async def gate(moto: MotoBackend, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[StsGate]:
    """Every AWS service at moto, STS through the gate."""
    async with sts_gate(moto.endpoint_url) as gate:
        monkeypatch.setenv("AWS_ENDPOINT_URL", moto.endpoint_url)
        monkeypatch.setenv("AWS_ENDPOINT_URL_STS", gate.url)
        yield gate


def by_target(out: str) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["account"], r["region"]): r for r in json.loads(out)["repositories"]}


# --- the three "done when" lines ---------------------------------------------------------------


async def test_two_regions_in_one_sweep_are_both_pruned_and_named(
    tmp_path: Path, moto: MotoBackend, gate: StsGate
) -> None:
    here = seed(moto)
    there_backend = MotoBackend(moto.endpoint_url, region=OTHER_REGION)
    there = seed(there_backend)
    argv = ["--policy", policy_file(tmp_path), "--output", "json"]
    code, out = await run_cli("sweep", "--region", REGION, "--region", OTHER_REGION, *argv)
    assert code == 0, out
    reports = by_target(out)
    assert set(reports) == {(ACCOUNT, REGION), (ACCOUNT, OTHER_REGION)}
    assert moto.digests("app") == {here[0]}
    assert there_backend.digests("app") == {there[0]}
    assert set(reports[(ACCOUNT, OTHER_REGION)]["deleted"]) == set(there[1:])
    assert gate.assumed == [], "no role was asked for"


async def test_an_assumed_role_sweeps_its_own_account_and_not_the_callers(
    tmp_path: Path, moto: MotoBackend, gate: StsGate
) -> None:
    mine = seed(moto)
    member = MotoBackend(moto.endpoint_url, role_arn=MEMBER_ROLE)
    theirs = seed(member)
    argv = ["--policy", policy_file(tmp_path), "--output", "json", "--external-id", "org-cleaner"]
    code, out = await run_cli("sweep", "--role-arn", MEMBER_ROLE, *argv)
    assert code == 0, out
    (report,) = json.loads(out)["repositories"]
    assert (report["account"], report["region"]) == (MEMBER, REGION)
    assert member.digests("app") == {theirs[0]}
    assert moto.digests("app") == set(mine), "the caller's own registry is left alone"
    (asked,) = gate.assumed
    assert asked["RoleArn"] == MEMBER_ROLE
    assert asked["RoleSessionName"] == "ecr-cleaner"
    assert asked["ExternalId"] == "org-cleaner"


async def test_a_role_that_cannot_be_assumed_fails_alone_with_exit_1(
    tmp_path: Path, moto: MotoBackend, gate: StsGate
) -> None:
    gate.refused.add(BROKEN_ROLE)
    member = MotoBackend(moto.endpoint_url, role_arn=MEMBER_ROLE)
    theirs = seed(member)
    argv = ["--policy", policy_file(tmp_path), "--output", "json"]
    code, out = await run_cli("sweep", "--role-arn", BROKEN_ROLE, "--role-arn", MEMBER_ROLE, *argv)
    assert code == 1
    report = json.loads(out)
    (failed,) = report["failed_targets"]
    assert (failed["account"], failed["region"]) == (BROKEN, REGION)
    assert "AccessDenied" in failed["error"] and BROKEN_ROLE in failed["error"]
    assert member.digests("app") == {theirs[0]}, "the other target is still swept"


async def test_a_region_that_does_not_answer_fails_alone(
    tmp_path: Path, moto: MotoBackend, gate: StsGate
) -> None:
    """moto serves only the regions botocore lists; for another it answers 500, as a region
    not enabled answers an error: that target fails, the listed region is swept."""
    mine = seed(moto)
    code, out = await run_cli(
        "sweep", "--region", REGION, "--region", "zz-nowhere-1",
        "--policy", policy_file(tmp_path), "--output", "json",
    )  # fmt: skip
    assert code == 1, out
    report = json.loads(out)
    assert [(f["account"], f["region"]) for f in report["failed_targets"]] == [("", "zz-nowhere-1")]
    assert set(by_target(out)) == {(ACCOUNT, REGION)}
    assert moto.digests("app") == {mine[0]}


# --- isolation -----------------------------------------------------------------------------------


async def test_max_deletions_applies_per_target_and_repository(
    tmp_path: Path, moto: MotoBackend, gate: StsGate
) -> None:
    """Two targets with two deletions each under max_deletions 2: neither is braked."""
    seed(moto)
    there = MotoBackend(moto.endpoint_url, region=OTHER_REGION)
    seed(there)
    policy = policy_file(tmp_path, safety={"max_deletions": 2})
    code, out = await run_cli(
        "sweep", "--region", REGION, "--region", OTHER_REGION, "--policy", policy,
        "--output", "json",
    )  # fmt: skip
    assert code == 0, out
    assert all(len(r["deleted"]) == 2 for r in by_target(out).values())


async def test_each_role_is_assumed_once_for_all_of_its_regions(
    tmp_path: Path, moto: MotoBackend, gate: StsGate
) -> None:
    seed(MotoBackend(moto.endpoint_url, role_arn=MEMBER_ROLE))
    seed(MotoBackend(moto.endpoint_url, region=OTHER_REGION, role_arn=MEMBER_ROLE))
    gate.assumed.clear()
    code, out = await run_cli(
        "plan", "--role-arn", MEMBER_ROLE, "--region", REGION, "--region", OTHER_REGION,
        "--policy", policy_file(tmp_path), "--output", "json",
    )  # fmt: skip
    assert code == 0, out
    assert set(by_target(out)) == {(MEMBER, REGION), (MEMBER, OTHER_REGION)}
    assert len(gate.assumed) == 1


async def test_the_policy_files_targets_with_their_own_entries(
    tmp_path: Path, moto: MotoBackend, gate: StsGate, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A target's own `repositories:` replace the top-level ones for that target only; the
    text report groups the repositories by target."""
    monkeypatch.setenv("COLUMNS", "160")
    mine = seed(moto)
    member = MotoBackend(moto.endpoint_url, role_arn=MEMBER_ROLE)
    theirs = seed(member)
    targets = [
        {"regions": [REGION]},
        {
            "role": MEMBER_ROLE,
            "regions": [REGION],
            "repositories": [{"match": "*", "rules": [keep_newest_rule(2)]}],
        },
    ]
    code, out = await run_cli(
        "sweep", "--policy", policy_file(tmp_path, targets=targets), "--output", "text"
    )
    assert code == 0, out
    assert moto.digests("app") == {mine[0]}
    assert member.digests("app") == set(theirs[:2])
    assert f"target {MEMBER}/{REGION}" in out and f"target {ACCOUNT}/{REGION}" in out


# --- in use across accounts ----------------------------------------------------------------------


def run_in_member_account(moto: MotoBackend, image: str) -> None:
    """An ECS service in the member account whose task runs `image` (another account's)."""
    member = MotoBackend(moto.endpoint_url, role_arn=MEMBER_ROLE)
    ecs = boto3.client("ecs", region_name=REGION, endpoint_url=moto.endpoint_url, **member.keys)
    ecs.create_cluster(clusterName="prod")
    definition = ecs.register_task_definition(
        family="api", containerDefinitions=[{"name": "api", "image": image, "memory": 128}]
    )["taskDefinition"]["taskDefinitionArn"]
    ecs.create_service(cluster="prod", serviceName="api", taskDefinition=definition,
                       desiredCount=1)  # fmt: skip


async def test_an_ecs_service_in_account_b_protects_an_image_in_account_as_registry(
    tmp_path: Path, moto: MotoBackend, gate: StsGate
) -> None:
    """The rule: the in-use set is merged across every target before any target plans, so a
    workload in B that pulls A's image by A's URI keeps it in A."""
    mine = seed(moto)
    run_in_member_account(moto, f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/app:v2")
    member = MotoBackend(moto.endpoint_url, role_arn=MEMBER_ROLE)
    seed(member, "other")
    targets = [{"regions": [REGION]}, {"role": MEMBER_ROLE, "regions": [REGION]}]
    policy = policy_file(
        tmp_path, targets=targets, protect={"newer_than": "0s", "in_use": "auto"}, ecs={}
    )
    code, out = await run_cli("sweep", "--policy", policy, "--output", "json")
    assert code == 0, out
    assert moto.digests("app") == {mine[0], mine[2]}, "v2 runs in account B"
    kept = by_target(out)[(ACCOUNT, REGION)]["keep"]
    assert any("ecs:" in item["reason"] and MEMBER in item["reason"] for item in kept), kept


async def test_when_account_b_cannot_be_read_account_a_fails_closed(
    tmp_path: Path, moto: MotoBackend, gate: StsGate
) -> None:
    """B's role refused: what B runs is unknown, so nothing in A is deleted either."""
    gate.refused.add(BROKEN_ROLE)
    mine = seed(moto)
    targets = [{"regions": [REGION]}, {"role": BROKEN_ROLE, "regions": [REGION]}]
    policy = policy_file(
        tmp_path, targets=targets, protect={"newer_than": "0s", "in_use": "auto"}, ecs={}
    )
    code, out = await run_cli("sweep", "--policy", policy, "--output", "json")
    assert code == 1
    (report,) = json.loads(out)["repositories"]
    assert BROKEN in report["error"] and "AccessDenied" in report["error"]
    assert moto.digests("app") == set(mine)


# --- resolving targets, pure -----------------------------------------------------------------


def test_flags_replace_the_files_targets_and_repeats_are_dropped() -> None:
    entries = (TargetEntry(MEMBER_ROLE, ("eu-west-1",)),)
    specs = resolve_targets(
        entries, roles=[BROKEN_ROLE, BROKEN_ROLE], regions=[REGION, REGION], external_id="xx"
    )
    assert [(s.role, s.region, s.external_id) for s in specs] == [(BROKEN_ROLE, REGION, "xx")]
    specs = resolve_targets(entries, regions=["us-west-2"])
    assert [s.target for s in specs] == [Target(MEMBER, "us-west-2")]
    assert [s.target for s in resolve_targets((), default_region=REGION)] == [Target("", REGION)]


def test_no_region_anywhere_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="no AWS region"):
        resolve_targets((TargetEntry(MEMBER_ROLE),))


@pytest.mark.parametrize(
    ("targets", "message"),
    [
        ([], "targets must be a list of 1 to"),
        ([{"role": "arn:aws:iam::12:role/x"}], "role must be an IAM role ARN"),
        ([{"regions": ["mars-1"]}], "regions must be a list of AWS regions"),
        ([{"external_id": "x"}], "external_id must be 2 to 1224"),
        ([{"region": REGION}], 'unknown key "region"'),
        ([{"repositories": []}], "[0]: repositories: repositories must be a non-empty"),
    ],
)
def test_bad_targets_are_refused_with_their_location(targets: Any, message: str) -> None:
    doc = {"repositories": [{"match": "*", "rules": [keep_newest_rule(1)]}], "targets": targets}
    with pytest.raises(PolicyError, match=rf"policy: targets.*{_escape(message)}"):
        parse_policy_file(doc)


def _escape(text: str) -> str:
    import re

    return re.escape(text)


def test_top_level_repositories_are_optional_when_every_target_has_its_own() -> None:
    entry = [{"match": "*", "rules": [keep_newest_rule(1)]}]
    policy = parse_policy_file({"targets": [{"regions": [REGION], "repositories": entry}]})
    assert policy.entries == () and policy.targets[0].entries
    with pytest.raises(PolicyError, match='missing required key "repositories"'):
        parse_policy_file({"targets": [{"regions": [REGION]}]})


async def test_flags_without_top_level_entries_are_refused_before_any_call(
    tmp_path: Path,
) -> None:
    doc = {"targets": [{"regions": [REGION], "repositories": [{"match": "*", "rules": "ecr"}]}]}
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(doc))
    code, _ = await run_cli("plan", "--policy", str(path), "--role-arn", MEMBER_ROLE)
    assert code == 2


@pytest.mark.parametrize("flag", ["--region=mars", "--role-arn=arn:aws:iam::1:role/x"])
async def test_bad_region_or_role_flags_exit_2(flag: str, tmp_path: Path) -> None:
    code, out = await run_cli("plan", "--policy", policy_file(tmp_path), flag)
    assert (code, out) == (2, "")


# --- the receiver routes by account and region --------------------------------------------------


def push(account: str, region: str, repository: str = "app") -> PushEvent:
    return PushEvent("e1", account, region, repository)


def test_an_events_account_and_region_pick_its_target() -> None:
    unrouted: list[None] = []
    own = Scope(None, REGION)
    member = Scope(MEMBER, OTHER_REGION)
    routes = (
        Route(own, prefix=prefix_of(own)),
        Route(member, lambda name: name.startswith("team/"), prefix_of(member)),
    )
    router = Router(routes, on_unrouted=lambda: unrouted.append(None))
    assert router.route(push(ACCOUNT, REGION)) == Routed(f"{REGION}/app")
    assert router.route(push(MEMBER, OTHER_REGION, "team/x")) == Routed(
        f"{MEMBER}/{OTHER_REGION}/team/x"
    )
    ignored = router.route(push(MEMBER, OTHER_REGION, "app"))
    assert isinstance(ignored, Ignored) and "no policy entry" in ignored.reason
    stranger = router.route(push("999999999999", OTHER_REGION))
    assert isinstance(stranger, Ignored) and "not a target of this receiver" in stranger.reason
    assert len(unrouted) == 1


class Recording:
    def __init__(self) -> None:
        self.asked: list[tuple[str, ...]] = []

    async def prune(self, repositories: tuple[str, ...], *, dry_run: bool) -> RunReport:
        self.asked.append(repositories)
        return RunReport(dry_run, tuple(RepositoryReport(r) for r in repositories))


async def test_scheduler_keys_go_back_to_their_targets_and_plain_names_to_every_target() -> None:
    own, member = Recording(), Recording()
    pruner = TargetsPruner([(f"{REGION}/", own), (f"{MEMBER}/{REGION}/", member)])
    report = await pruner.prune((f"{MEMBER}/{REGION}/api", f"{REGION}/web"), dry_run=True)
    assert (own.asked, member.asked) == ([("web",)], [("api",)])
    assert len(report.repositories) == 2
    await pruner.prune(("shared",), dry_run=True)
    assert own.asked[-1] == member.asked[-1] == ("shared",)
    await pruner.prune((), dry_run=True)
    assert own.asked[-1] == member.asked[-1] == ()


def push_body(account: str, region: str, event_id: str) -> bytes:
    doc = json.loads((SAMPLES / "push.json").read_text())
    doc.update(id=event_id, account=account, region=region)
    doc["detail"]["repository-name"] = "app"
    return json.dumps(doc).encode()


async def test_the_receiver_prunes_the_target_an_event_names(
    tmp_path: Path, moto: MotoBackend, gate: StsGate, aiohttp_client: Any
) -> None:
    """`serve` over two targets: a push in the member account prunes there, not here; a
    push from an account that is no target is ignored, and counted. (Without `--account`,
    the chain's own target would take every account no role names.)"""
    from cleaner import wiring
    from cleaner.settings import parse_args

    mine = seed(moto)
    member = MotoBackend(moto.endpoint_url, role_arn=MEMBER_ROLE)
    theirs = seed(member)
    targets = [{"regions": [REGION]}, {"role": MEMBER_ROLE, "regions": [REGION]}]
    argv = ["serve", "--policy", policy_file(tmp_path, targets=targets), "--debounce", "0",
            "--account", ACCOUNT]  # fmt: skip
    settings = parse_args([*argv, "--insecure-no-auth"], environ={})
    assert settings.engine is not None and settings.serve is not None
    policy = wiring.load_policy(settings.engine)
    async with wiring.open_receiver(settings.engine, settings.serve, policy, None) as app:
        client = await aiohttp_client(app)
        try:
            stranger = await client.post("/events", data=push_body("999999999999", REGION, "a"))
            assert (await stranger.json())["status"] == "ignored"
            answer = await client.post("/events", data=push_body(MEMBER, REGION, "b"))
            assert answer.status == 202, await answer.text()
            await until(lambda: member.digests("app") == {theirs[0]}, within=20)
            metrics = await (await client.get("/metrics")).text()
        finally:
            await client.close()
    assert moto.digests("app") == set(mine), "the caller's own app was not pushed to"
    assert "ecr_cleaner_events_unrouted_total 1.0" in metrics


# --- reports over several targets ---------------------------------------------------------------


def two_target_report() -> RunReport:
    from cleaner.planning.model import Decision, Image, Plan, TargetFailure, Verdict

    def report(account: str, region: str) -> RepositoryReport:
        images = [Image(f"sha256:{i:064x}", (f"v{i}",), NOW - timedelta(days=i), size=100)
                  for i in range(3)]  # fmt: skip
        verdicts = [Verdict.KEEP, Verdict.EXPIRE, Verdict.EXPIRE]
        plan = Plan(
            "app", tuple(Decision(i, v, "r") for i, v in zip(images, verdicts, strict=True))
        )
        return RepositoryReport("app", plan=plan, account=account, region=region)

    failed = TargetFailure(Target(BROKEN, REGION), "cannot assume it")
    return RunReport(True, (report(ACCOUNT, REGION), report(MEMBER, OTHER_REGION)), (failed,))


def test_the_text_report_groups_by_target_and_names_the_failed_ones() -> None:
    import io

    from cleaner.reports.text import text_console, write_text

    out = io.StringIO()
    write_text(two_target_report(), NOW, text_console(out, width=120))
    text = out.getvalue()
    assert f"target {ACCOUNT}/{REGION}" in text and f"target {MEMBER}/{OTHER_REGION}" in text
    assert f"{MEMBER}/{OTHER_REGION} app" in text, "the bars name the target too"
    assert f"target {BROKEN}/{REGION}: ERROR cannot assume it" in text
    assert text.rstrip().endswith("1 target could not be swept")


def test_json_and_html_name_each_repositorys_target() -> None:
    from cleaner.reports.html import render_html
    from cleaner.reports.json import report_to_json

    doc = report_to_json(two_target_report(), NOW)
    assert [(r["account"], r["region"]) for r in doc["summary"]["repositories"]] == [
        (ACCOUNT, REGION), (MEMBER, OTHER_REGION)
    ]  # fmt: skip
    assert doc["failed_targets"] == [
        {"account": BROKEN, "region": REGION, "error": "cannot assume it"}
    ]
    page = render_html(two_target_report(), NOW)
    assert f'"repository":"{MEMBER}/{OTHER_REGION} app"' in page
