"""Build hook: stamp the source revision into the built package, for `ecr-cleaner --version`.

Everything else about the package is in pyproject.toml. A wheel (and so the image) carries
`cleaner/_build.json` with the revision it was built from: `ECR_CLEANER_REVISION` when set
(the Dockerfile passes its REVISION build argument; its build context has no .git), else
the git checkout being built, else none. Editable installs are not stamped: they ask git
at run time (cleaner/version.py), so their revision never goes stale.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


def source_revision() -> str | None:
    given = os.environ.get("ECR_CLEANER_REVISION", "").strip()
    if given:
        return given
    if not (ROOT / ".git").exists():
        return None
    try:
        head = _git("rev-parse", "HEAD")
        changed = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}-dirty" if changed else head or None


def _git(*args: str) -> str:
    done = subprocess.run(  # noqa: S603 - fixed arguments, no shell
        ["git", "-C", str(ROOT), *args],  # noqa: S607 - git from PATH
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    return done.stdout.strip()


class StampedBuildPy(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        stamp = Path(self.build_lib, "cleaner", "_build.json")
        stamp.write_text(json.dumps({"revision": source_revision()}) + "\n", encoding="utf-8")


setup(cmdclass={"build_py": StampedBuildPy})
