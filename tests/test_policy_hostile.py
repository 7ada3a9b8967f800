"""Policy files that try to hurt: each is one line and exit 2, fast, before any registry call;
and whatever `validate` accepts can be planned without aborting the run."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cleaner.engine import Engine, SweepRequest
from cleaner.errors import PolicyError
from cleaner.planning.checks import MAX_COUNT, show
from cleaner.planning.model import Image, Repository
from cleaner.planning.policy_file import load_policy_file, parse_policy_file
from cleaner.planning.units import MAX_DAYS
from tests.support.fakes import FakeRegistry
from tests.support.policies import keep_newest_everywhere, keep_newest_rule

ALIAS_BOMB = (
    "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
    )
    + "safety: {keep_at_least: *i}\nrepositories: [{match: '*', rules: ecr}]\n"
)

HOSTILE = {
    "duplicate protect": (
        "repositories: [{match: '*', rules: ecr}]\nprotect: {tags: [prod]}\nprotect: {}\n",
        "duplicate key",
    ),
    "duplicate match": (
        "repositories:\n  - match: 'load/*'\n    match: '*'\n    rules: ecr\n",
        "duplicate key",
    ),
    "duplicate json key": (
        '{"repositories": [{"match": "a", "rules": "ecr"}], "safety": {}, "safety": {}}',
        "duplicate key",
    ),
    "alias bomb": (ALIAS_BOMB, "anchors (&name) are not allowed"),
    "5000-digit json number": (
        '{"rules": [{"rulePriority": ' + "9" * 5000 + "}]}",
        "a number is too long",
    ),
    "5000-digit yaml number": ("safety: {keep_at_least: " + "9" * 5000 + "}\n", "not valid YAML"),
    "deep json": ("[" * 100_000 + "]" * 100_000, "nests too deeply"),
    "deep yaml": ("a: " + "[" * 100_000 + "]" * 100_000 + "\n", "nests too deeply"),
    "absurd duration": (
        "repositories: [{match: '*', rules: ecr}]\nprotect: {newer_than: 99999999999d}\n",
        "newer_than",
    ),
    "a century and a day": (
        "repositories: [{match: '*', rules: ecr}]\nprotect: {pulled_within: 36501d}\n",
        "longer than 36500 days",
    ),
    "a century and a second, compound": (
        "repositories: [{match: '*', rules: ecr}]\nprotect: {newer_than: 5214w2d0.000001s}\n",
        "longer than 36500 days",
    ),
    "sinceImagePushed 999999999 days": (
        json.dumps(
            {
                "rules": [
                    {
                        "rulePriority": 1,
                        "selection": {
                            "tagStatus": "any",
                            "countType": "sinceImagePushed",
                            "countUnit": "days",
                            "countNumber": 999_999_999,
                        },
                        "action": {"type": "expire"},
                    }
                ]
            }
        ),
        "countNumber must be at most 36500",
    ),
    "backreference regex": (
        "repositories: [{match: '*', rules: ecr}]\nprotect: {tag_regex: ['(a)\\1']}\n",
        "not a valid regex for RE2",
    ),
}


def write(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "policy.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(("text", "message"), HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_policy_is_one_line_and_exit_2_within_10_s(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, text)
    for command in (["validate", str(path)], ["plan", "--policy", str(path)]):
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "cleaner", *command, "--endpoint-url", "http://127.0.0.1:9"]
            if command[0] == "plan"
            else [sys.executable, "-m", "cleaner", *command],
            capture_output=True,
            text=True,
            timeout=30,
        )
        elapsed = time.monotonic() - started
        assert done.returncode == 2, done.stderr[-500:]
        (line,) = done.stderr.splitlines()
        assert message in line and len(line) < 400, line
        assert elapsed < 10, f"{command[0]} took {elapsed:.1f} s"


def test_random_bytes_are_one_line_and_exit_2(tmp_path: Path) -> None:
    path = write(tmp_path, bytes(range(256)) * 16)
    done = subprocess.run(
        [sys.executable, "-m", "cleaner", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "not UTF-8 text" in done.stderr


def test_bad_values_are_shown_short_whatever_they_expand_to() -> None:
    bomb: object = ["lol"] * 9
    for _ in range(9):
        bomb = [bomb] * 9  # nine levels of sharing: 9**10 leaves if written out
    started = time.monotonic()
    shown = show(bomb)
    assert len(shown) <= 60 and time.monotonic() - started < 0.1
    assert show(10**5000) == "a number too long to show"


async def test_every_bound_validate_accepts_can_be_planned() -> None:
    """At each bound (a century of days, 2**31 - 1 images, a century of grace), a plan runs."""
    doc = {
        "repositories": [
            {
                "match": "old",
                "rules": [
                    {
                        "rulePriority": 1,
                        "selection": {
                            "tagStatus": "any",
                            "countType": "sinceImagePushed",
                            "countUnit": "days",
                            "countNumber": MAX_DAYS,
                        },
                        "action": {"type": "expire"},
                    }
                ],
            },
            {"match": "many", "rules": [keep_newest_rule(MAX_COUNT)]},
        ],
        "protect": {"newer_than": f"{MAX_DAYS}d", "pulled_within": f"{MAX_DAYS}d"},
        "safety": {"keep_at_least": MAX_COUNT, "max_deletions": MAX_COUNT},
    }
    policy = parse_policy_file(doc)
    now = datetime.now(UTC)
    images = [Image(f"sha256:{i:064x}", (), now - timedelta(days=i)) for i in range(3)]
    registry = FakeRegistry({"old": list(images), "many": list(images)})
    report = await Engine(registry).run(SweepRequest(policy=policy, now=now, apply=True))
    assert report.ok and all(r.plan is not None for r in report.repositories)


class Exploding(FakeRegistry):
    """A registry whose one repository lists an image the planner cannot compare."""

    async def images(self, repository: Repository) -> list[Image]:
        images = await super().images(repository)
        if repository.name == "broken":
            naive = datetime(2020, 1, 1)
            return [*images, Image("sha256:" + "f" * 64, (), naive)]
        return images


async def test_a_planning_error_is_that_repositorys_error_never_the_runs() -> None:
    now = datetime.now(UTC)
    images = [Image(f"sha256:{i:064x}", (), now - timedelta(days=i + 1)) for i in range(4)]
    registry = Exploding({"broken": list(images), "fine": list(images)})
    report = await Engine(registry).run(
        SweepRequest(policy=keep_newest_everywhere(1), now=now, apply=True)
    )
    by_name = {r.repository: r for r in report.repositories}
    assert by_name["broken"].error and "internal error" in by_name["broken"].error
    assert by_name["broken"].deleted == ()
    assert by_name["fine"].ok and len(by_name["fine"].deleted) == 3
    assert not report.ok


def test_a_backtracking_regex_is_linear_against_a_hostile_tag(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "repositories: [{match: '*', rules: ecr}]\nprotect: {tag_regex: ['(a|aa)+b']}\n",
    )
    policy = load_policy_file(path)
    started = time.monotonic()
    assert policy.protect.tag_regex[0].fullmatch("a" * 100_000) is None
    assert time.monotonic() - started < 0.5


def test_an_ecr_pattern_of_four_wildcards_is_linear_against_a_long_tag() -> None:
    from cleaner.planning.lifecycle import parse_policy
    from cleaner.planning.planner import evaluate

    rule = {
        "rulePriority": 1,
        "selection": {
            "tagStatus": "tagged",
            "tagPatternList": ["a*a*a*a*b"],
            "countType": "imageCountMoreThan",
            "countNumber": 1,
        },
        "action": {"type": "expire"},
    }
    now = datetime.now(UTC)
    image = Image("sha256:" + "1" * 64, ("a" * 300,), now)
    started = time.monotonic()
    (decision,) = evaluate([image], parse_policy({"rules": [rule]}), now)
    assert decision.reason == "kept: no rule selects it"
    assert time.monotonic() - started < 0.5


def test_loading_refuses_before_any_registry_call(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="duplicate key"):
        load_policy_file(write(tmp_path, HOSTILE["duplicate protect"][0]))
