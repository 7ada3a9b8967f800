"""Help that shows how, and shell completion generated from the same parser."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys

import pytest

from cleaner.settings import COMMANDS, EXAMPLES, build_parser, parse_args
from tests.support.servers import debian_binary


def help_of(command: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "cleaner", command, "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "100"},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_subcommand_ends_its_help_with_examples_that_parse(command: str) -> None:
    text = help_of(command)
    examples = text.split("\nexamples:\n", 1)[1].splitlines()
    assert 2 <= len(examples) <= 3 and examples == [f"  {line}" for line in EXAMPLES[command]]
    for line in EXAMPLES[command]:
        words = shlex.split(line)
        while "=" in words[0]:  # a variable set for the command
            words.pop(0)
        if ">" in words:  # the shell's redirection, not the command's
            words = words[: words.index(">")]
        assert words[:2] == ["ecr-cleaner", command], line
        settings = parse_args(words[1:], environ={})  # a real example: it parses
        assert settings.command == command


def test_sweep_help_says_plainly_that_it_deletes_unless_dry_run() -> None:
    text = " ".join(help_of("sweep").split())
    assert "This deletes: with --dry-run it only plans" in text
    assert "--yes does not ask" in text
    summary = build_parser().format_help()
    assert "plan, then DELETE what the policy expires; --dry-run only plans" in " ".join(
        summary.split()
    )


def completion(shell: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "cleaner", "completion", shell],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_bash_completion_is_valid_bash_and_completes_commands_and_options() -> None:
    script = completion("bash")
    bash = shutil.which("bash") or "/bin/bash"
    check = subprocess.run([bash, "-n"], input=script, capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    # Source it and ask it, the way bash's `complete -F` does on Tab.
    probe = (
        'source /dev/stdin; words() { COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); '
        '_shtab_ecr_cleaner; echo "${COMPREPLY[*]}"; }; '
        "words ecr-cleaner sw; words ecr-cleaner sweep --dr; words ecr-cleaner plan --out; "
        "words ecr-cleaner comp"
    )
    done = subprocess.run([bash, "-c", probe], input=script, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["sweep", "--dry-run", "--output", "completion"]
    assert "_shtab_ecr_cleaner_plan___policy_COMPGEN=_shtab_compgen_files" in script


def test_the_zsh_completion_is_valid_zsh_and_knows_every_command() -> None:
    zsh = debian_binary("zsh", "zsh")
    script = completion("zsh")
    check = subprocess.run([zsh, "-n"], input=script, capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    assert script.startswith("#compdef ecr-cleaner")
    for command in COMMANDS:
        assert f"    {command}:'" in script, command
    assert "--dry-run" in script and "_files" in script


def test_an_unknown_shell_is_one_line_and_exit_2() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cleaner", "completion", "fish"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == "ecr-cleaner: error: completion 'fish': expected one of bash, zsh\n"
