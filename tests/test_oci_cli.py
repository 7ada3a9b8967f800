"""`plan` and `sweep --registry URL` end to end, the CLI in this process against a real
distribution registry, and the one-line errors for bad registry settings."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.cli import run_cli
from tests.support.oci import Pusher
from tests.support.policies import keep_newest_rule

_names = itertools.count()


def policy_file(tmp_path: Path, count: int = 2, **extra: Any) -> str:
    doc = {
        "repositories": [{"match": "cli*/*", "rules": [keep_newest_rule(count)]}],
        "protect": {"newer_than": "0s", "in_use": False},
        "safety": {"keep_at_least": 0},
        **extra,
    }
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def seed(url: str) -> tuple[Pusher, str]:
    """Four images whose config created times are not their push order."""
    push, name = Pusher(url), f"cli{next(_names)}/app"
    for tag, day in [("v1", 1), ("v4", 4), ("v2", 2), ("v3", 3)]:
        push.image(name, tag, created=f"2026-11-0{day}T00:00:00Z")
    return push, name


async def test_plan_then_sweep_keep_2_by_config_created_leaves_the_two_newest(
    distribution: str, tmp_path: Path
) -> None:
    push, name = seed(distribution)
    policy = policy_file(tmp_path)

    code, out = await run_cli(
        "plan", "--policy", policy, "--registry", distribution, "--output", "json"
    )
    assert code == 0, out
    [planned] = json.loads(out)["repositories"]
    assert sorted(t for i in planned["expire"] for t in i["tags"]) == ["v1", "v2"]
    assert push.tags(name) == ["v1", "v2", "v3", "v4"]  # a plan deletes nothing

    code, out = await run_cli("sweep", "--policy", policy, "--registry", distribution, "--yes")
    assert code == 0, out
    assert push.tags(name) == ["v3", "v4"]


async def test_the_policy_files_registry_key_selects_the_registry(
    distribution: str, tmp_path: Path
) -> None:
    push, name = seed(distribution)
    policy = policy_file(tmp_path, registry=distribution + "/")
    code, out = await run_cli("sweep", "--policy", policy, "--yes", name)
    assert code == 0, out
    assert push.tags(name) == ["v3", "v4"]


async def test_sweep_with_a_first_seen_file_keeps_it(distribution: str, tmp_path: Path) -> None:
    push, name = seed(distribution)
    record = tmp_path / "seen.json"
    policy = policy_file(tmp_path)
    args = ("--policy", policy, "--registry", distribution, "--first-seen-file", str(record))
    code, out = await run_cli("sweep", *args, "--yes", name)
    assert code == 0, out
    # First seen now, so seeded by their created times: the same two go.
    assert push.tags(name) == ["v3", "v4"]
    code, _ = await run_cli("plan", *args, name)  # the next listing forgets the deleted
    assert code == 0
    seen = json.loads(record.read_text())["seen"]
    assert len([k for k in seen if k.startswith(f"{name}@")]) == 2


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--registry", "ftp://reg.example"], "--registry='ftp://reg.example': expected http(s)"),
        (["--registry", "https://reg.example/v2"], "no path"),
        (["--registry-username", "ci"], "CLEANER_REGISTRY_PASSWORD"),
        (
            ["--registry", "https://reg.example", "--role-arn", "arn:aws:iam::123456789012:role/x"],
            "give one",
        ),
    ],
)
async def test_bad_registry_settings_are_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, _ = await run_cli("plan", "--policy", policy_file(tmp_path), *argv)
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and err.count("\n") == 1, err


async def test_a_registry_key_beside_targets_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = policy_file(
        tmp_path, registry="https://reg.example", targets=[{"regions": ["eu-west-1"]}]
    )
    code, _ = await run_cli("validate", policy)
    assert code == 2
    assert "registry names one OCI registry" in capsys.readouterr().err


def test_serve_takes_the_registry_flags_and_never_shows_the_password(tmp_path: Path) -> None:
    from cleaner.settings import parse_args

    seen = str(tmp_path / "s.json")
    argv = ["serve", "--policy", "p.yaml", "--registry", "https://reg.example:5000/",
            "--registry-username", "robot", "--first-seen-file", seen]  # fmt: skip
    settings = parse_args(argv, environ={"CLEANER_REGISTRY_PASSWORD": "hunter2"})
    engine = settings.engine
    assert engine is not None and engine.registry == "https://reg.example:5000"
    assert (engine.registry_username, engine.registry_password) == ("robot", "hunter2")
    assert "hunter2" not in repr(settings)


async def test_the_installed_command_plans_a_registry(distribution: str, tmp_path: Path) -> None:
    """The same through `python -m cleaner` in its own process: the entry point, argv and
    the exit code, as a CronJob runs it."""
    import asyncio
    import os
    import sys

    push, name = seed(distribution)
    argv = ["plan", "--policy", policy_file(tmp_path), "--registry", distribution, "--output",
            "json", name]  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cleaner", *argv,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "HOME": str(tmp_path)},
    )  # fmt: skip
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    [planned] = json.loads(out)["repositories"]
    assert sorted(t for i in planned["keep"] for t in i["tags"]) == ["v3", "v4"]
    assert push.tags(name) == ["v1", "v2", "v3", "v4"]


async def test_a_role_beside_the_policys_registry_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = policy_file(tmp_path, registry="https://reg.example")
    role = "arn:aws:iam::123456789012:role/x"
    code, _ = await run_cli("plan", "--policy", policy, "--role-arn", role)
    assert code == 2
    assert "--role-arn is an ECR account" in capsys.readouterr().err
