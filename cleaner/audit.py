"""The audit log file: one JSON line per record, flushed at once, so a crash loses none."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

from cleaner.errors import ConfigError
from cleaner.ports import AuditSink


@contextmanager
def audit_log(path: str | None) -> Iterator[AuditSink | None]:
    """A sink appending to `path` (None: no sink); ConfigError when it cannot be opened."""
    if not path:
        yield None
        return
    try:
        stream = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in finally
    except OSError as error:
        raise ConfigError(f"--audit-log {path}: {error.strerror or error}") from error

    def write(record: dict[str, object]) -> None:
        stream.write(json.dumps(record, sort_keys=True) + "\n")
        stream.flush()

    try:
        yield write
    finally:
        stream.close()
