"""Every policy-file feature through the CLI, against the emulator and against moto."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from tests.support.backends import Backend, EmulatorBackend
from tests.support.cli import run_cli


def keep(count: int) -> list[dict[str, Any]]:
    selection = {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": count}
    return [{"rulePriority": 1, "selection": selection, "action": {"type": "expire"}}]


def seed(backend: Backend, repo: str, images: dict[str, tuple[list[str], float]]) -> dict[str, str]:
    """Push named images (tags, hours ago); returns digest -> name."""
    backend.create_repository(repo)
    now = datetime.now(UTC)
    return {
        backend.push(repo, tags, now - timedelta(hours=hours), seed=f"{repo}/{name}"): name
        for name, (tags, hours) in images.items()
    }


def daily(count: int) -> dict[str, tuple[list[str], float]]:
    return {f"i{n}": ([f"build-{n}"], 24.0 * (n + 1)) for n in range(count)}


async def sweep(
    backend: Backend, tmp_path: Path, policy: dict[str, Any], *repos: str
) -> tuple[int, dict[str, Any]]:
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    code, out = await run_cli(
        "sweep",
        *repos,
        "--policy",
        str(path),
        "--endpoint-url",
        backend.endpoint_url,
        "--output",
        "json",
    )
    return code, {r["repository"]: r for r in json.loads(out)["repositories"]}


async def test_per_repository_globs_first_match_wins(backend: Backend, tmp_path: Path) -> None:
    for repo in ("team-a/app", "team-b/app", "other/app"):
        seed(backend, repo, daily(8))
    policy = {
        "repositories": [
            {"match": "team-a/*", "rules": keep(2)},
            {"match": ["team-*"], "rules": keep(5)},
        ]
    }
    code, report = await sweep(backend, tmp_path, policy)
    assert code == 0 and set(report) == {"team-a/app", "team-b/app"}
    assert [len(backend.digests(r)) for r in ("team-a/app", "team-b/app", "other/app")] == [2, 5, 8]


async def test_rules_ecr_uses_the_repositorys_own_policy(backend: Backend, tmp_path: Path) -> None:
    seed(backend, "legacy/with", daily(6))
    seed(backend, "legacy/without", daily(6))
    backend.set_lifecycle_policy("legacy/with", json.dumps({"rules": keep(3)}))
    code, report = await sweep(
        backend, tmp_path, {"repositories": [{"match": "legacy/*", "rules": "ecr"}]}
    )
    assert code == 0
    assert len(backend.digests("legacy/with")) == 3 and len(backend.digests("legacy/without")) == 6
    assert all("no ECR lifecycle policy" in i["reason"] for i in report["legacy/without"]["keep"])


async def test_protections_win_over_the_rules(backend: Backend, tmp_path: Path) -> None:
    names = seed(
        backend,
        "svc",
        {
            "newest": (["main-9"], 0.1),
            "fresh": (["main-8"], 0.3),  # inside the 1h grace
            "prod": (["prod"], 120),
            "release": (["release-7"], 130),
            "regex": (["build-42"], 140),
            "semver-top": (["3.1.0"], 150),
            "semver-old": (["v3.0.0"], 160),
            "plain": (["main-1"], 170),
        },
    )
    protect = {
        "tags": ["prod", "release-*"],
        "tag_regex": [r"build-\d+"],
        "semver": {"keep": 1},
        "newer_than": "1h",
    }
    code, report = await sweep(
        backend, tmp_path, {"repositories": [{"match": "*", "rules": keep(1)}], "protect": protect}
    )
    assert code == 0
    assert {names[d] for d in report["svc"]["deleted"]} == {"semver-old", "plain"}
    reasons = {names[i["digest"]]: i["reason"] for i in report["svc"]["keep"]}
    assert reasons["fresh"].startswith("protected: pushed")
    assert reasons["prod"].startswith("protected: tag prod")
    assert reasons["release"].startswith("protected: tag release-7 matches release-*")
    assert reasons["regex"].startswith("protected: tag build-42 matches regex")
    assert reasons["semver-top"].startswith("protected: semver top 1")
    assert len(backend.digests("svc")) == 6


async def test_keep_at_least_holds_when_every_image_is_expired(
    backend: Backend, tmp_path: Path
) -> None:
    names = seed(backend, "app", daily(4))
    rules = [
        {
            "rulePriority": 1,
            "selection": {
                "tagStatus": "any",
                "countType": "sinceImagePushed",
                "countUnit": "days",
                "countNumber": 0 + 1,
            },
            "action": {"type": "expire"},
        }
    ]
    code, report = await sweep(
        backend,
        tmp_path,
        {"repositories": [{"match": "app", "rules": rules}], "safety": {"keep_at_least": 2}},
    )
    assert code == 0
    assert {names[d] for d in backend.digests("app")} == {"i0", "i1"}
    assert all("keep_at_least 2" in i["reason"] for i in report["app"]["keep"])


async def test_max_deletions_fails_the_repository_and_deletes_nothing(
    backend: Backend, tmp_path: Path
) -> None:
    seed(backend, "big", daily(6))
    seed(backend, "small", daily(3))
    policy = {"repositories": [{"match": "*", "rules": keep(1)}], "safety": {"max_deletions": 3}}
    code, report = await sweep(backend, tmp_path, policy)
    assert code == 1
    assert (
        "max_deletions: 5 planned, limit 3" in report["big"]["error"]
        and report["big"]["deleted"] == []
    )
    assert len(backend.digests("big")) == 6
    assert len(report["small"]["deleted"]) == 2 and report["small"]["error"] is None


async def test_a_bad_file_is_refused_before_any_registry_call(
    emulator: EmulatorBackend, tmp_path: Path
) -> None:
    seed(emulator, "app", daily(3))
    path = tmp_path / "policy.yaml"
    path.write_text(
        yaml.safe_dump(
            {"repositories": [{"match": "*", "rules": keep(1)}], "protect": {"newer_than": "soon"}}
        )
    )
    code, _ = await run_cli("sweep", "--policy", str(path), "--endpoint-url", emulator.endpoint_url)
    assert code == 2
    assert sum(emulator.store.calls.values()) == 0 and len(emulator.digests("app")) == 3


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cleaner", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_validate_summarises_a_good_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    doc = {
        "repositories": [
            {"match": "team/*", "rules": keep(3)},
            {"match": "legacy/*", "rules": "ecr"},
        ],
        "protect": {"tags": ["prod"]},
    }
    path.write_text(yaml.safe_dump(doc))
    done = validate(path)
    assert done.returncode == 0, done.stderr
    assert (
        "team/*: 1 rule" in done.stdout
        and "legacy/*: the repository's own ECR lifecycle policy" in done.stdout
    )
    assert "protect: tags prod; newer_than 1h; pulled_within off" in done.stdout
    assert "safety: keep_at_least 1, max_deletions none" in done.stdout


def test_validate_names_the_problem_of_a_bad_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(
        yaml.safe_dump(
            {"repositories": [{"match": "team/*", "rules": keep(3)}, {"match": "x", "rule": []}]}
        )
    )
    done = validate(path)
    assert done.returncode == 2 and done.stdout == ""
    problem = (
        'repositories[1]: the entry has unknown key "rule": did you mean "rules"? '
        "(allowed: match, rules)"
    )
    assert done.stderr.strip() == f"ecr-cleaner: error: {path}: {problem}"


def test_validate_names_every_one_of_three_mistakes_and_plan_names_the_first(
    tmp_path: Path,
) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(
        "repositories:\n"
        "  - match: team/*\n"
        "    rules:\n"
        "      - rulePriority: 1\n"
        "        selection: {tagStatus: tagged, countType: imageCountMoreThan, countNumber: 3}\n"
        "        action: {type: expire}\n"
        "protect:\n"
        "  tag: [prod]\n"
        "  newer_than: 1 week\n"
    )
    done = validate(path)
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 3, done.stderr
    assert all(line.startswith(f"ecr-cleaner: error: {path}: ") for line in lines)
    assert "needs tagPatternList or tagPrefixList" in lines[0]
    assert 'unknown key "tag": did you mean "tags"?' in lines[1]
    assert "newer_than: not a duration: '1 week'" in lines[2]
    plan = subprocess.run(
        [sys.executable, "-m", "cleaner", "plan", "--policy", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert plan.returncode == 2 and plan.stdout == ""
    (line,) = plan.stderr.splitlines()
    assert line.endswith("(and 2 more; `ecr-cleaner validate` names them all)"), line
