"""`ecr-cleaner demo` as a newcomer runs it: a real process, the real emulator, exit 0."""

from __future__ import annotations

import re
import subprocess
import sys


def test_demo_plans_sweeps_and_reclaims_space() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cleaner", "demo"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "plan (dry run" in done.stdout and "─ sweep ─" in done.stdout
    total = re.search(r"^\s*total\s+(\d+)\s+(\d+)\s", done.stdout, re.MULTILINE)
    assert total, done.stdout
    before, after = int(total[1]), int(total[2])
    assert 0 < after < before
    assert "0 failed, 0 repository errors" in " ".join(done.stdout.split())
    assert "\x1b" not in done.stdout  # piped: plain text
    assert "Traceback" not in done.stderr
