"""Close the intents an earlier run left open, by asking the registry what happened.

An intent without outcomes (`records.py`) means a run stopped between sending a delete and
recording its answer. Its images are either gone (the registry applied the batch: record
the deletion, with the intent's reason and run id) or still there (record that they were
not deleted). The registry is the only witness, and it is read, never written, here.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cleaner.engine.records import deleted_record, not_deleted_record
from cleaner.errors import CleanerError
from cleaner.planning.model import DeleteFailure
from cleaner.ports import AuditSink, Registry

log = logging.getLogger(__name__)
STILL_PRESENT = "StillPresent"


@dataclass(frozen=True, slots=True)
class OpenIntent:
    """One image an intent named, with no outcome recorded after it."""

    run_id: str
    repository: str
    image: Mapping[str, Any]
    """As `records.image_fields` wrote it: digest, tags, pushed_at, size, rule, reason."""
    account: str = ""
    region: str = ""
    """The target the intent was written for; "" in records of a single-target run."""


async def reconcile(intents: Iterable[OpenIntent], registry: Registry, audit: AuditSink) -> int:
    """Record an outcome for every open intent the registry can answer for; returns how
    many were recorded. A repository the registry cannot read stays open for next time."""
    by_repository: dict[str, list[OpenIntent]] = defaultdict(list)
    for intent in intents:
        by_repository[intent.repository].append(intent)
    settled = 0
    for name, open_ in sorted(by_repository.items()):
        try:
            settled += await _settle(name, open_, registry, audit)
        except CleanerError as error:
            log.warning("%s: %d open intents not reconciled yet: %s", name, len(open_), error)
    return settled


async def _settle(
    name: str, intents: list[OpenIntent], registry: Registry, audit: AuditSink
) -> int:
    repository = await registry.repository(name)
    size = registry.batch_limit
    for start in range(0, len(intents), size):
        chunk = intents[start : start + size]
        present = await registry.recheck(repository, [i.image["digest"] for i in chunk])
        now = datetime.now(UTC)
        for intent in chunk:
            audit(_outcome(name, intent, intent.image["digest"] in present, now))
    log.info("%s: reconciled %d open intents", name, len(intents))
    return len(intents)


def _outcome(name: str, intent: OpenIntent, present: bool, now: datetime) -> dict[str, Any]:
    if present:
        failure = DeleteFailure(
            intent.image["digest"],
            STILL_PRESENT,
            f"run {intent.run_id} stopped before its delete answered; the image is still there",
        )
        return {**not_deleted_record(name, failure, intent.run_id, now), "reconciled": True}
    reason = (
        f"{intent.image.get('reason', '')} (run {intent.run_id} stopped before recording "
        "the deletion; reconciled from the registry)"
    )
    image = {**intent.image, "reason": reason}
    return {**deleted_record(name, image, intent.run_id, now), "reconciled": True}
