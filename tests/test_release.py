"""What a company adopting a release looks at: the distribution installs under its own name
and says which revision it is; LICENSE, CHANGELOG, image labels and the CI example agree with
the code; `make demo` installs only what the demo needs."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from cleaner import __version__
from cleaner.settings import parse_args
from cleaner.version import git_revision, short, stamped_revision, version_line

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
DISTRIBUTION = PYPROJECT["project"]["name"]
WORKFLOW = ROOT / "examples" / "github-actions" / "ecr-cleaner.yml"
DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")


def run(*command: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)


def head() -> str:
    done = run("git", "-C", str(ROOT), "rev-parse", "HEAD", timeout=30)
    assert done.returncode == 0, f"the tests run in a git checkout: {done.stderr}"
    return done.stdout.strip()


# --- the name and the version --------------------------------------------------------------


def test_the_distribution_is_not_the_other_projects_name_and_keeps_the_command() -> None:
    """`ecr-cleaner` on PyPI is another project with a console script of the same name."""
    assert re.sub(r"[-_.]+", "-", DISTRIBUTION).lower() != "ecr-cleaner"
    assert PYPROJECT["project"]["scripts"] == {"ecr-cleaner": "cleaner.cli:main"}
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert f"DIST   := {DISTRIBUTION}\n" in makefile, "make lock excludes the distribution"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"pip install {DISTRIBUTION}" in readme or f"install {DISTRIBUTION}" in readme


def test_version_names_the_checkouts_revision() -> None:
    done = run(sys.executable, "-m", "cleaner", "--version", timeout=60)
    assert done.returncode == 0 and not done.stderr
    revision = git_revision()
    assert revision is not None and revision.startswith(head())
    assert done.stdout == f"ecr-cleaner {__version__} (revision {short(revision)})\n"


def test_a_stamp_is_read_and_anything_else_falls_back_cleanly(tmp_path: Path) -> None:
    stamp = tmp_path / "_build.json"
    assert stamped_revision(stamp) is None, "no stamp: a checkout"
    stamp.write_text('{"revision": "0123456789abcdef0123456789abcdef01234567"}')
    assert stamped_revision(stamp) == "0123456789abcdef0123456789abcdef01234567"
    for broken in ("{", '{"revision": null}', "[]", '{"revision": ""}'):
        stamp.write_text(broken)
        assert stamped_revision(stamp) is None, broken
    assert git_revision(tmp_path) is None, "not a checkout"
    assert short("0123456789abcdef0123-dirty") == "0123456789ab-dirty"
    assert version_line("x").startswith(f"x {__version__} (revision ")


@pytest.mark.slow
def test_the_built_wheel_installs_in_a_clean_venv_and_runs_under_its_name(
    tmp_path: Path,
) -> None:
    """pip wheel, then a fresh venv with the runtime lock: the command works outside the
    checkout, knows its revision from the stamp, and the package data and LICENSE ship."""
    wheels, venv = tmp_path / "wheels", tmp_path / "venv"
    built = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir",
                str(wheels), str(ROOT), timeout=300)  # fmt: skip
    assert built.returncode == 0, built.stderr
    (wheel,) = wheels.glob("*.whl")
    assert wheel.name == f"{DISTRIBUTION.replace('-', '_')}-{__version__}-py3-none-any.whl"
    assert run(sys.executable, "-m", "venv", str(venv), timeout=120).returncode == 0
    python = venv / "bin" / "python"
    install = run(str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                  "-r", str(ROOT / "requirements.lock"), str(wheel), timeout=600)  # fmt: skip
    assert install.returncode == 0, install.stderr
    assert run(str(python), "-m", "pip", "check", timeout=120).returncode == 0
    elsewhere = {"cwd": tmp_path, "timeout": 120, "env": {**os.environ, "PYTHONPATH": ""}}
    version = run(str(venv / "bin" / "ecr-cleaner"), "--version", **elsewhere)
    assert version.returncode == 0, version.stderr
    revision = git_revision()
    assert revision is not None
    assert version.stdout == f"ecr-cleaner {__version__} (revision {short(revision)})\n"
    probe = (
        "import importlib.metadata as m, json, cleaner, cleaner.wiring\n"
        f"d = m.distribution({DISTRIBUTION!r})\n"
        "print(json.dumps({'name': d.metadata['Name'], 'license': d.metadata['License-Expression'],"
        " 'files': [str(f) for f in d.files], 'where': cleaner.__file__}))"
    )
    found = json.loads(run(str(python), "-c", probe, **elsewhere).stdout)
    assert found["name"] == DISTRIBUTION and found["license"] == "Apache-2.0"
    assert str(venv) in found["where"], "imported from the venv, not from the checkout"
    assert any(f.endswith("licenses/LICENSE") for f in found["files"])
    assert "cleaner/_build.json" in found["files"]
    validate = run(str(venv / "bin" / "ecr-cleaner"), "validate", str(ROOT / "k8s" / "policy.yaml"),
                   **elsewhere)  # fmt: skip
    assert validate.returncode == 0, validate.stderr


def test_the_build_stamps_the_revision_it_is_given(tmp_path: Path) -> None:
    """The Dockerfile's REVISION reaches the build as ECR_CLEANER_REVISION (no .git there)."""
    given = "c0ffee" * 6 + "abcd"
    built = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir",
                str(tmp_path), str(ROOT), timeout=300,
                env={**os.environ, "ECR_CLEANER_REVISION": given})  # fmt: skip
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert json.loads(archive.read("cleaner/_build.json")) == {"revision": given}
    assert not (ROOT / "cleaner" / "_build.json").exists(), "never stamped into the sources"


# --- LICENSE, CHANGELOG, image labels --------------------------------------------------------


def test_the_license_is_the_apache_2_text_the_metadata_claims() -> None:
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.split()[:4] == ["Apache", "License", "Version", "2.0,"]
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert "END OF TERMS AND CONDITIONS" in text
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    assert 'org.opencontainers.image.licenses="Apache-2.0"' in DOCKERFILE


def test_the_changelog_keeps_a_changelog() -> None:
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert text.startswith("# Changelog\n") and "keepachangelog.com/en/1.1.0" in text
    headings = re.findall(r"^## \[([^\]]+)\]", text, re.MULTILINE)
    assert headings and headings[0] == "Unreleased"
    assert all(h == "Unreleased" or re.fullmatch(r"\d+\.\d+\.\d+", h) for h in headings)
    kinds = set(re.findall(r"^### (\w+)$", text, re.MULTILINE))
    assert kinds and kinds <= {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}
    assert __version__ in text


def test_the_image_labels_name_version_revision_created_and_source() -> None:
    labels = dict(re.findall(r"(org\.opencontainers\.image\.\w+)=\"([^\"]*)\"", DOCKERFILE))
    assert labels["org.opencontainers.image.version"] == "${VERSION}"
    assert labels["org.opencontainers.image.revision"] == "${REVISION}"
    assert labels["org.opencontainers.image.created"] == "${CREATED}"
    assert labels["org.opencontainers.image.source"] == "${SOURCE}"
    runtime = DOCKERFILE.rsplit("\nFROM ", 1)[1]  # ARGs are per stage: these are the last's
    assert re.search(rf"^ARG VERSION={re.escape(__version__)}$", runtime, re.MULTILINE)
    for name in ("REVISION", "CREATED", "SOURCE"):
        assert re.search(rf"^ARG {name}=", runtime, re.MULTILINE), name
    build = DOCKERFILE.rsplit("\nFROM ", 1)[0]
    assert re.search(r"^ARG REVISION=", build, re.MULTILINE)
    assert 'ECR_CLEANER_REVISION="$REVISION"' in build, "the build stage stamps it"


# --- make demo installs the runtime lock only; make test everything ---------------------------


def make_dry_run(venv: Path, target: str, *extra: str) -> str:
    done = run("make", "-n", "-C", str(ROOT), f"VENV={venv}", target, *extra, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_make_demo_installs_only_the_runtime_lock_and_make_test_adds_the_dev_set(
    tmp_path: Path,
) -> None:
    venv = tmp_path / ".venv"
    demo = make_dry_run(venv, "demo")
    assert "-r requirements.lock" in demo and "--no-deps -e ." in demo
    assert "requirements-dev.lock" not in demo and "[dev]" not in demo
    fresh = make_dry_run(venv, "lint")
    assert fresh.index("--no-deps -e .") < fresh.index("-r requirements-dev.lock")
    # After `make demo`: `make test` installs the dev set, and only that.
    venv.mkdir()
    (venv / ".runtime").touch()
    after_demo = make_dry_run(venv, "lint")
    assert "requirements-dev.lock -e '.[dev]'" in after_demo and "--no-deps -e ." not in after_demo
    (venv / ".installed").touch()
    assert "pip install" not in make_dry_run(venv, "lint"), "nothing to install any more"
    assert "pip install" not in make_dry_run(venv, "demo")
    # A new runtime pin reinstalls both, in order.
    changed = make_dry_run(venv, "lint", "-W", "requirements.lock")
    assert changed.index("--no-deps -e .") < changed.index("-r requirements-dev.lock")


# --- the GitHub Actions example -----------------------------------------------------------------


def workflow() -> dict[Any, Any]:
    loaded: dict[Any, Any] = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    return loaded


def test_the_actions_example_passes_the_workflow_linter() -> None:
    zizmor = shutil.which("zizmor", path=str(Path(sys.executable).parent))
    if zizmor is None:
        pytest.fail("zizmor is not installed: it is a dev dependency (requirements-dev.lock)")
    done = run(zizmor, "--offline", "--no-progress", str(WORKFLOW), timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_actions_example_installs_this_release_and_runs_commands_the_cli_has() -> None:
    flow = workflow()  # YAML 1.1 reads the key `on` as True
    assert flow["env"]["INSTALL"] == f"{DISTRIBUTION}=={__version__}"
    cron = yaml.safe_load((ROOT / "k8s" / "cronjob.yaml").read_text(encoding="utf-8"))
    assert flow[True]["schedule"] == [{"cron": cron["spec"]["schedule"]}], "the CronJob's"
    commands = []
    for job in flow["jobs"].values():
        for step in job["steps"]:
            script = step.get("run", "").replace("\\\n", " ")
            for line in script.splitlines():
                if line.strip().startswith("ecr-cleaner "):
                    words = shlex.split(line.split("ecr-cleaner", 1)[1].split(">")[0])
                    commands.append([w.replace("$POLICY", flow["env"]["POLICY"]) for w in words])
    assert sorted(c[0] for c in commands) == ["plan", "sweep"]
    for argv in commands:
        settings = parse_args(argv, environ={})
        assert settings.engine is not None and settings.engine.policy_path == flow["env"]["POLICY"]
    plan = flow["jobs"]["plan"]
    assert plan["permissions"] == {
        "contents": "read", "id-token": "write", "pull-requests": "write",
    }  # fmt: skip
    assert flow["jobs"]["sweep"]["permissions"] == {"contents": "read", "id-token": "write"}
    uses = [s["uses"] for job in flow["jobs"].values() for s in job["steps"] if "uses" in s]
    assert all(re.fullmatch(r"[\w-]+/[\w-]+@[0-9a-f]{40}", u) for u in uses), "pinned to commits"
    assert any(u.startswith("aws-actions/configure-aws-credentials@") for u in uses)
