"""The CLI end to end: real aiobotocore client over HTTP against moto and the emulator."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support.aws_examples import EXAMPLES
from tests.support.backends import Backend, EmulatorBackend, MotoBackend
from tests.support.cli import run_cli


def keep_policy(tmp_path: Path, count: int) -> str:
    doc = {
        "rules": [
            {
                "rulePriority": 1,
                "description": f"keep {count}",
                "selection": {
                    "tagStatus": "any",
                    "countType": "imageCountMoreThan",
                    "countNumber": count,
                },
                "action": {"type": "expire"},
            }
        ]
    }
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(doc))
    return str(path)


def push_daily(backend: Backend, repo: str, count: int) -> list[str]:
    """`count` images pushed a day apart, oldest first, each tagged build-N."""
    backend.create_repository(repo)
    now = datetime.now(UTC)
    return [
        backend.push(repo, [f"build-{i}"], now - timedelta(days=count - i), seed=f"{repo}-{i}")
        for i in range(count)
    ]


async def test_keep_2_of_10_against_moto_keeps_the_two_newest(
    moto: MotoBackend, tmp_path: Path
) -> None:
    digests = push_daily(moto, "app", 10)
    code, out = await run_cli(
        "sweep",
        "--policy",
        keep_policy(tmp_path, 2),
        "--endpoint-url",
        moto.endpoint_url,
        "--output",
        "json",
    )
    assert code == 0, out
    assert moto.digests("app") == set(digests[-2:])
    assert set(moto.tags("app")) == {"build-8", "build-9"}
    report = json.loads(out)["repositories"][0]
    assert sorted(report["deleted"]) == sorted(digests[:8])


async def test_a_sweep_report_in_json_sums_up_what_it_deleted(
    moto: MotoBackend, tmp_path: Path
) -> None:
    push_daily(moto, "app", 6)
    code, out = await run_cli(
        "sweep", "--policy", keep_policy(tmp_path, 2), "--endpoint-url", moto.endpoint_url,
        "--output", "json",
    )  # fmt: skip
    assert code == 0, out
    doc = json.loads(out)
    (row,) = doc["summary"]["repositories"]
    images = doc["repositories"][0]["keep"] + doc["repositories"][0]["expire"]
    assert (row["repository"], row["images"], row["keep"], row["expire"]) == ("app", 6, 2, 4)
    assert row["deleted"] == 4 and row["reclaimed_bytes"] == row["reclaimable_bytes"] > 0
    assert row["kept_bytes"] + row["reclaimable_bytes"] == sum(i["size"] for i in images)
    assert doc["summary"]["total"]["repositories"] == 1


async def test_keep_5_of_260_against_moto_leaves_exactly_five(
    moto: MotoBackend, tmp_path: Path
) -> None:
    digests = push_daily(moto, "big", 260)
    code, _ = await run_cli(
        "sweep", "--policy", keep_policy(tmp_path, 5), "--endpoint-url", moto.endpoint_url
    )
    assert code == 0
    assert moto.digests("big") == set(digests[-5:])


@pytest.mark.parametrize("command", [["plan"], ["sweep", "--dry-run"]])
async def test_plan_and_dry_run_delete_nothing(
    backend: Backend, tmp_path: Path, command: list[str]
) -> None:
    digests = push_daily(backend, "app", 6)
    code, out = await run_cli(
        *command,
        "--policy",
        keep_policy(tmp_path, 1),
        "--endpoint-url",
        backend.endpoint_url,
        "--output",
        "json",
    )
    assert code == 0
    result = json.loads(out)
    assert result["dry_run"] is True
    assert (
        len(result["repositories"][0]["expire"]) == 5 and result["repositories"][0]["deleted"] == []
    )
    assert backend.digests("app") == set(digests)


async def test_json_output_has_the_documented_shape(
    emulator: EmulatorBackend, tmp_path: Path
) -> None:
    push_daily(emulator, "app", 3)
    code, out = await run_cli(
        "sweep",
        "--policy",
        keep_policy(tmp_path, 1),
        "--endpoint-url",
        emulator.endpoint_url,
        "--output",
        "json",
    )
    assert code == 0
    (repo,) = json.loads(out)["repositories"]
    assert set(repo) == {
        "repository",
        "account",
        "region",
        "keep",
        "expire",
        "deleted",
        "failed",
        "error",
    }
    item = repo["keep"][0]
    assert set(item) == {"digest", "tags", "pushed_at", "size", "reason"}
    assert item["tags"] == ["build-2"] and item["pushed_at"].endswith("Z") and item["reason"]
    assert len(repo["deleted"]) == 2 and repo["failed"] == [] and repo["error"] is None


async def test_a_missing_repository_fails_that_repository_with_exit_1(
    emulator: EmulatorBackend, tmp_path: Path
) -> None:
    push_daily(emulator, "app", 3)
    code, out = await run_cli(
        "sweep", "app", "nope", "--policy", keep_policy(tmp_path, 1),
        "--endpoint-url", emulator.endpoint_url, "--output", "json",
    )  # fmt: skip
    assert code == 1
    by_name = {r["repository"]: r for r in json.loads(out)["repositories"]}
    assert "RepositoryNotFoundException" in by_name["nope"]["error"]
    assert len(by_name["app"]["deleted"]) == 2


@pytest.mark.parametrize(
    ("title", "repo", "rules", "expired"), EXAMPLES, ids=[e[0] for e in EXAMPLES]
)
async def test_aws_worked_examples_through_plan_json(
    emulator: EmulatorBackend,
    tmp_path: Path,
    title: str,
    repo: list[tuple[str, list[str], int]],
    rules: list[dict[str, Any]],
    expired: set[str],
) -> None:
    emulator.create_repository("example")
    now = datetime.now(UTC)
    names = {
        emulator.push("example", tags, now - timedelta(hours=age), seed=f"{title}-{name}"): name
        for name, tags, age in repo
    }
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"rules": rules}))
    code, out = await run_cli(
        "plan", "--policy", str(policy), "--endpoint-url", emulator.endpoint_url, "--output", "json"
    )
    assert code == 0
    (result,) = json.loads(out)["repositories"]
    assert {names[i["digest"]] for i in result["expire"]} == expired
    assert {names[i["digest"]] for i in result["keep"]} == set(names.values()) - expired


def run_process(*argv: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cleaner", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        **kwargs,
    )


@pytest.mark.parametrize(
    "policy",
    [
        "{not json",
        '{"rules": []}',
        '{"rules": [{"rulePriority": 1, "selection": {"tagStatus": "tagged",'
        ' "countType": "imageCountMoreThan", "countNumber": 1}, "action": {"type": "expire"}}]}',
        '{"rules": [{"rulePriority": 0, "selection": {"tagStatus": "any",'
        ' "countType": "imageCountMoreThan", "countNumber": 1}, "action": {"type": "expire"}}]}',
    ],
    ids=["not JSON or YAML", "no rules", "tagged without a tag list", "priority zero"],
)
def test_an_invalid_policy_exits_2_without_traceback_and_deletes_nothing(
    moto: MotoBackend, tmp_path: Path, policy: str
) -> None:
    digests = push_daily(moto, "app", 3)
    path = tmp_path / "bad.json"
    path.write_text(policy)
    done = run_process("sweep", "--policy", str(path), "--endpoint-url", moto.endpoint_url)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "error:" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert moto.digests("app") == set(digests)


def test_missing_policy_file_exits_2(tmp_path: Path) -> None:
    done = run_process("plan", "--policy", str(tmp_path / "absent.yaml"))
    assert done.returncode == 2 and "cannot read" in done.stderr and "Traceback" not in done.stderr


def test_bad_usage_exits_2() -> None:
    done = run_process("sweep", "--concurrency", "0", "--policy", "x")
    assert done.returncode == 2 and "--concurrency='0': expected a whole number >= 1" in done.stderr


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--shards", "4"], {}, "JOB_COMPLETION_INDEX"),
        (["--shard", "3/3"], {}, "--shard='3/3': expected I/N"),
        (["--shard", "x"], {}, "--shard='x': expected I/N"),
        (["--shard", "0/2", "app"], {}, "do not also name repositories"),
        (["--shards", "2"], {"JOB_COMPLETION_INDEX": "2"}, "JOB_COMPLETION_INDEX='2'"),
    ],
)
def test_bad_shard_settings_exit_2(
    argv: list[str], env: dict[str, str], message: str, tmp_path: Path
) -> None:
    import os

    done = run_process(
        "sweep", "--policy", keep_policy(tmp_path, 1), *argv, env={**os.environ, **env}
    )
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr


async def test_an_indexed_job_pod_sweeps_its_shard(
    emulator: EmulatorBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cleaner.engine import Shard

    for i in range(6):
        push_daily(emulator, f"repo-{i}", 3)
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "1")
    code, out = await run_cli(
        "sweep", "--shards", "2", "--policy", keep_policy(tmp_path, 1),
        "--endpoint-url", emulator.endpoint_url, "--output", "json",
    )  # fmt: skip
    assert code == 0
    swept = {r["repository"] for r in json.loads(out)["repositories"]}
    assert swept == {f"repo-{i}" for i in range(6) if Shard(1, 2).owns(f"repo-{i}")}
    assert all(
        len(emulator.digests(f"repo-{i}")) == (1 if f"repo-{i}" in swept else 3) for i in range(6)
    )
