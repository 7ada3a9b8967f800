"""A benchmark server in its own process: it prints one JSON line once it listens, and
stops when its stdin closes, so a benchmark that dies leaves no server behind."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def speaking_child(command: Sequence[str], *, quiet: bool = False) -> Iterator[dict[str, Any]]:
    """Start `command` in the project root; yields its hello line. `quiet`: its stderr
    goes nowhere (moto logs every request)."""
    stderr = subprocess.DEVNULL if quiet else None
    proc = subprocess.Popen(  # noqa: S603
        command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{' '.join(command[:3])} exited before it listened")
        hello: dict[str, Any] = json.loads(line)
        yield hello
    finally:
        if proc.stdin:
            proc.stdin.close()  # its signal to stop
        proc.wait(timeout=30)
