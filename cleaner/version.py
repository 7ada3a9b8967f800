"""What `ecr-cleaner --version` prints: the version and the source revision it was built from.

The revision has two sources, tried in order:
- the stamp the build wrote into the package (`setup.py` writes `_build.json` into the
  wheel, from `ECR_CLEANER_REVISION` or from git), so a wheel or the image knows it without
  git;
- git itself, for a checkout (an editable install keeps no stamp, since it would go stale
  with the next commit).
Neither: "unknown". Standard library only, and git runs only when `--version` is asked.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from cleaner import __version__

STAMP = Path(__file__).with_name("_build.json")
SOURCE_ROOT = Path(__file__).resolve().parent.parent
SHOWN = 12  # hex digits of the commit shown, as `git log --abbrev=12` would
GIT_TIMEOUT_S = 2.0


def stamped_revision(stamp: Path = STAMP) -> str | None:
    """The revision the build recorded, if this is a built package that has one."""
    try:
        revision = json.loads(stamp.read_text(encoding="utf-8")).get("revision")
    except (OSError, ValueError, AttributeError):
        return None
    return revision if isinstance(revision, str) and revision else None


def git_revision(root: Path = SOURCE_ROOT) -> str | None:
    """HEAD of the checkout at `root`, with `-dirty` when tracked files differ from it."""
    if not (root / ".git").exists():  # a directory, or a file in a worktree
        return None
    head = _git(root, "rev-parse", "HEAD")
    if head is None:
        return None
    changed = _git(root, "status", "--porcelain", "--untracked-files=no")
    return f"{head}-dirty" if changed else head


def _git(root: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(  # noqa: S603 - fixed arguments, no shell
            ["git", "-C", str(root), *args],  # noqa: S607 - git from PATH, as a developer's shell
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def revision() -> str | None:
    return stamped_revision() or git_revision()


def short(revision: str) -> str:
    """`41118f0abcde` or `41118f0abcde-dirty`."""
    commit, dirty, _ = revision.partition("-dirty")
    return commit[:SHOWN] + dirty


def version_line(prog: str) -> str:
    found = revision()
    return f"{prog} {__version__} (revision {short(found) if found else 'unknown'})"
