"""The audit trail's records, written ahead of every delete call.

A delete that the registry applied but whose answer never arrived (the process was killed,
the connection dropped) must still be on record. So each batch is recorded twice:
- `intent`, before the call: which images this run is about to delete, and why;
- after the answer, one outcome per image: `deleted`, or `not_deleted` with the registry's
  reason.
An intent without outcomes means the run stopped in between; the next run (or the receiver
at start) reads the registry and records what happened (`reconcile.py`). An auditor looks for
`"event": "deleted"`; every record carries `run_id`, so the intent and its outcomes pair up.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from cleaner.planning.model import Decision, DeleteFailure, iso_utc

INTENT, DELETED, NOT_DELETED = "intent", "deleted", "not_deleted"


def image_fields(decision: Decision) -> dict[str, Any]:
    """What identifies an image and why it goes: the part every record repeats."""
    image = decision.image
    return {
        "digest": image.digest,
        "tags": list(image.tags),
        "pushed_at": iso_utc(image.pushed_at),
        "size": image.size,
        "rule": decision.rule,
        "reason": decision.reason,
    }


def intent_record(
    repository: str, decisions: Iterable[Decision], run_id: str, at: datetime
) -> dict[str, Any]:
    return {
        "event": INTENT,
        "time": iso_utc(at),
        "run_id": run_id,
        "repository": repository,
        "images": [image_fields(d) for d in decisions],
    }


def deleted_record(
    repository: str, image: Mapping[str, Any], run_id: str, at: datetime
) -> dict[str, Any]:
    """One deletion: what went, when, and why (`image` as `image_fields` makes it)."""
    return {
        "event": DELETED,
        "time": iso_utc(at),
        "run_id": run_id,
        "repository": repository,
        **image,
    }


def not_deleted_record(
    repository: str, failure: DeleteFailure, run_id: str, at: datetime
) -> dict[str, Any]:
    return {
        "event": NOT_DELETED,
        "time": iso_utc(at),
        "run_id": run_id,
        "repository": repository,
        "digest": failure.digest,
        "code": failure.code,
        "message": failure.message,
    }
