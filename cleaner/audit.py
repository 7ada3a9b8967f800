"""The audit log file: one JSON line per record, appended and flushed as it happens.

Opening the file also reads what is already in it, once, keeping only the intents that no
outcome followed (the file grows forever; memory holds the open intents only), so that the
composition root can reconcile them before this run deletes anything. Records are flushed
to the operating system before the delete call they announce: a killed process loses none.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

from cleaner.engine.reconcile import OpenIntent
from cleaner.engine.records import DELETED, INTENT, NOT_DELETED
from cleaner.errors import ConfigError

log = logging.getLogger(__name__)


class AuditLog:
    """An open audit log: `write` is the engine's sink; `open_intents` what to reconcile."""

    def __init__(self, stream: IO[str], open_intents: dict[IntentKey, OpenIntent]):
        self._stream = stream
        self._open = open_intents

    def write(self, record: dict[str, Any]) -> None:
        self._stream.write(json.dumps(record, sort_keys=True) + "\n")
        self._stream.flush()

    def open_intents(self) -> list[OpenIntent]:
        """Intents found in the file when it was opened that no outcome followed."""
        return list(self._open.values())


@contextmanager
def audit_log(path: str | None) -> Iterator[AuditLog | None]:
    """The audit log at `path` (None: no log); ConfigError when it cannot be opened."""
    if not path:
        yield None
        return
    try:
        stream = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - closed in finally
    except OSError as error:
        raise ConfigError(f"--audit-log {path}: {error.strerror or error}") from error
    try:
        stream.seek(0)
        found = scan(stream)
        yield AuditLog(stream, found)
    finally:
        stream.close()


IntentKey = tuple[str, str, str, str]
"""(account, region, repository, digest): records of a run over several targets carry the
account and region (either "" when a record or its target has none)."""


def scan(lines: IO[str]) -> dict[IntentKey, OpenIntent]:
    """Every intent no outcome followed, by its key."""
    open_: dict[IntentKey, OpenIntent] = {}
    unreadable = 0
    for line in lines:
        try:
            record = json.loads(line)
            _apply(record, open_)
        except (ValueError, TypeError, KeyError, AttributeError):
            unreadable += 1  # a line cut short by a crash, or not ours
    if unreadable:
        log.warning("audit log: %d lines could not be read and were skipped", unreadable)
    return open_


def _apply(record: dict[str, Any], open_: dict[IntentKey, OpenIntent]) -> None:
    repository, event = record["repository"], record.get("event", DELETED)
    account, region = str(record.get("account", "")), str(record.get("region", ""))
    if event == INTENT:
        for image in record["images"]:
            intent = OpenIntent(record["run_id"], repository, image, account, region)
            open_[(account, region, repository, image["digest"])] = intent
    elif event in (DELETED, NOT_DELETED):
        open_.pop((account, region, repository, record["digest"]), None)
