"""Process settings: flags over CLEANER_* variables over defaults, every value checked once.

The contract: a bad value is one line naming the flag or the variable, exit 2, before any
registry call; `--help` and `--version` never look at the environment.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cleaner.errors import ConfigError
from cleaner.planning.model import Shard
from cleaner.settings import load_token, parse_args
from tests.support.backends import EmulatorBackend

KEEP_ONE = '{"rules": [{"rulePriority": 1, "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 1}, "action": {"type": "expire"}}]}'  # noqa: E501


def run(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cleaner", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )


@pytest.fixture
def policy(tmp_path: Path) -> str:
    path = tmp_path / "policy.json"
    path.write_text(KEEP_ONE)
    return str(path)


BAD_ENVIRONMENTS = [
    pytest.param({"CLEANER_CONCURRENCY": "abc"}, "CLEANER_CONCURRENCY='abc'", id="concurrency abc"),
    pytest.param({"CLEANER_CONCURRENCY": "0"}, "CLEANER_CONCURRENCY='0'", id="concurrency 0"),
    pytest.param({"CLEANER_LOG_LEVEL": "LOUD"}, "CLEANER_LOG_LEVEL='LOUD'", id="log level LOUD"),
    pytest.param({"CLEANER_LOG_FORMAT": "xml"}, "CLEANER_LOG_FORMAT='xml'", id="log format xml"),
]
SERVE_ONLY = [
    pytest.param({"CLEANER_PORT": "abc"}, "CLEANER_PORT='abc'", id="port abc"),
    pytest.param({"CLEANER_PORT": "99999"}, "CLEANER_PORT='99999'", id="port 99999"),
    pytest.param({"CLEANER_DEBOUNCE": "nan"}, "CLEANER_DEBOUNCE='nan'", id="debounce nan"),
    pytest.param({"CLEANER_QUEUE_URL": "sqs://q"}, "CLEANER_QUEUE_URL='sqs://q'", id="queue url"),
]


CASES = [
    *(
        pytest.param(c, *p.values, id=f"{c}: {p.id}")
        for c in ("plan", "sweep")
        for p in BAD_ENVIRONMENTS
    ),
    *(pytest.param("serve", *p.values, id=f"serve: {p.id}") for p in BAD_ENVIRONMENTS + SERVE_ONLY),
]


@pytest.mark.parametrize(("command", "env", "named"), CASES)
def test_a_bad_variable_is_one_line_exit_2_and_no_registry_call(
    command: str, env: dict[str, str], named: str, policy: str, emulator: EmulatorBackend
) -> None:
    argv = [command, "--policy", policy, "--endpoint-url", emulator.endpoint_url]
    extra = {"serve": ["--insecure-no-auth"], "sweep": ["--dry-run"]}.get(command, [])
    done = run(*argv, *extra, env=env)
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("ecr-cleaner: error: ") and named in line
    assert sum(emulator.store.calls.values()) == 0


@pytest.mark.parametrize(("env", "named"), BAD_ENVIRONMENTS + SERVE_ONLY)
@pytest.mark.parametrize("argv", [["--help"], ["serve", "--help"], ["--version"]])
def test_help_and_version_work_whatever_the_environment_holds(
    env: dict[str, str], named: str, argv: list[str]
) -> None:
    done = run(*argv, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout and not done.stderr


def test_version_does_not_import_the_network_stack() -> None:
    probe = (
        "import sys\n"
        "from cleaner.cli import main\n"
        "try:\n    main(['--version'])\nexcept SystemExit:\n    pass\n"
        "heavy = ('aiohttp', 'aiobotocore', 'kubernetes_asyncio')\n"
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_flags_win_over_variables_and_variables_over_defaults() -> None:
    env = {"CLEANER_CONCURRENCY": "7", "CLEANER_POLICY": "/from/env"}
    chosen = parse_args(["plan"], environ=env)
    assert chosen.engine is not None
    assert (chosen.engine.concurrency, chosen.engine.policy_path) == (7, "/from/env")
    flagged = parse_args(["plan", "--concurrency", "3", "--policy", "/p"], environ=env)
    assert flagged.engine is not None
    assert (flagged.engine.concurrency, flagged.engine.policy_path) == (3, "/p")
    assert parse_args(["plan", "--policy", "/p"], environ={}).engine.concurrency == 10  # type: ignore[union-attr]


def test_every_command_that_runs_the_engine_takes_the_same_engine_flags() -> None:
    flags = ["--concurrency", "3", "--log-format", "json", "--log-level", "DEBUG"]
    flags += ["--region", "eu-west-1", "--endpoint-url", "http://x", "--kube-context", "a"]
    for command in ("plan", "sweep", "serve"):
        chosen = parse_args([command, "--policy", "/p", *flags], environ={})
        assert chosen.engine is not None, command
        assert chosen.engine.concurrency == 3 and chosen.engine.kube_contexts == ("a",)
        assert (chosen.log.level, chosen.log.format) == ("DEBUG", "json")
    assert parse_args(["demo", "--concurrency", "3"], environ={}).demo.concurrency == 3  # type: ignore[union-attr]


def test_serve_logs_json_by_default_and_the_cli_text() -> None:
    assert parse_args(["serve", "--policy", "/p"], environ={}).log.format == "json"
    assert parse_args(["sweep", "--policy", "/p"], environ={}).log.format == "text"
    env = {"CLEANER_LOG_FORMAT": "json"}
    assert parse_args(["sweep", "--policy", "/p"], environ=env).log.format == "json"


def test_a_missing_policy_names_the_flag_and_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"--policy FILE is required \(or set CLEANER_POLICY\)"):
        parse_args(["plan"], environ={})


def test_an_indexed_job_shard_comes_from_its_index() -> None:
    env = {"JOB_COMPLETION_INDEX": "1"}
    chosen = parse_args(["sweep", "--policy", "/p", "--shards", "3"], environ=env)
    assert chosen.run is not None and chosen.run.shard == Shard(1, 3)


def test_a_hostile_value_is_quoted_short() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_args(["plan", "--policy", "/p"], environ={"CLEANER_CONCURRENCY": "9" * 10_000})
    assert len(str(caught.value)) < 200


def test_the_token_file_wins_and_no_token_is_refused(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("from-file\n")
    serve = parse_args(["serve", "--policy", "/p", "--token-file", str(tmp_path / "token")]).serve
    assert serve is not None and load_token(serve, {"CLEANER_TOKEN": "env"}) == "from-file"
    bare = parse_args(["serve", "--policy", "/p"], environ={}).serve
    assert bare is not None and load_token(bare, {"CLEANER_TOKEN": " env "}) == "env"
    with pytest.raises(ConfigError, match="CLEANER_TOKEN or --token-file"):
        load_token(bare, {})


def test_details_and_yes_are_off_unless_given_and_html_is_an_output() -> None:
    plan = parse_args(["plan", "--policy", "/p"], environ={})
    assert plan.run is not None and plan.run.details is None
    sweep = parse_args(["sweep", "--policy", "/p", "--details", "--yes"], environ={})
    assert sweep.run is not None and (sweep.run.details, sweep.run.yes) == (True, True)
    assert parse_args(["sweep", "--policy", "/p"], environ={}).run.yes is False  # type: ignore[union-attr]
    html = parse_args(["plan", "--policy", "/p", "--output", "html"], environ={})
    assert html.run is not None and html.run.output == "html"
