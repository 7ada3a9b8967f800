"""What the receiver is sent, parsed into decisions. Pure: no I/O, no clock.

`parse_event` classifies EventBridge deliveries; `parse_prune_request` reads POST /prune.
Only a successful push asks for a prune. Every other well-formed event is acknowledged and
ignored, which also stops loops: our own deletions come back as DELETE events. The digest
is never validated, because the sample events in AWS's "Amazon ECR events and EventBridge"
guide carry a 60-character one, and the repository is what gets pruned.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from cleaner.errors import InvalidRequest
from cleaner.planning.names import is_repository_name

ECR_SOURCE = "aws.ecr"
IMAGE_ACTION = "ECR Image Action"

MAX_PRUNE_REPOSITORIES = 100
MAX_EVENT_ID = 128
"""EventBridge ids are 36-character UUIDs; a longer one is kept in the dedupe cache and
logged, so it is refused rather than stored."""
PRUNE_FIELDS = frozenset({"repositories", "dry_run", "wait"})


@dataclass(frozen=True, slots=True)
class PushEvent:
    """A successful image push: prune `repository`."""

    event_id: str
    account: str
    region: str
    repository: str
    tag: str | None = None
    digest: str | None = None


@dataclass(frozen=True, slots=True)
class Ignored:
    """A well-formed event that asks for nothing; acknowledged with 200."""

    event_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Scope:
    """The account and region this server prunes; None accepts any."""

    account: str | None = None
    region: str | None = None

    def mismatch(self, event: PushEvent) -> str | None:
        """Why this server does not serve the event, or None when it does."""
        if self.account is not None and event.account != self.account:
            return f"account {event.account} is not served here (serving {self.account})"
        if self.region is not None and event.region != self.region:
            return f"region {event.region} is not served here (serving {self.region})"
        return None


def parse_event(body: bytes) -> PushEvent | Ignored:
    """Classify one EventBridge delivery; raises InvalidRequest for anything malformed."""
    return event_from(json_object(body))


def event_from(doc: dict[str, Any]) -> PushEvent | Ignored:
    """`parse_event` of a body already read as a JSON object."""
    envelope = _envelope(doc)
    event_id = envelope["id"]
    if envelope["source"] != ECR_SOURCE:
        return Ignored(event_id, f"source {envelope['source']!r} is not {ECR_SOURCE}")
    if envelope["detail-type"] != IMAGE_ACTION:
        return Ignored(event_id, f"detail-type {envelope['detail-type']!r} is not a push")
    detail = envelope["detail"]
    action = _string(detail, "action-type", "detail.action-type")
    result = _string(detail, "result", "detail.result")
    if action != "PUSH":
        return Ignored(event_id, f"action-type {action!r} is not PUSH")
    if result != "SUCCESS":  # replication uses FAILED; anything but SUCCESS is a non-success
        return Ignored(event_id, f"push result {result!r} is not SUCCESS")
    repository = detail.get("repository-name")
    if repository is None:
        raise InvalidRequest("detail.repository-name is missing")
    if not is_repository_name(repository):
        raise InvalidRequest(f"detail.repository-name {_short(repository)} is not a valid name")
    return PushEvent(
        event_id=event_id,
        account=envelope["account"],
        region=envelope["region"],
        repository=repository,
        tag=_optional_string(detail, "image-tag"),
        digest=_optional_string(detail, "image-digest"),
    )


def json_object(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidRequest(f"body is not valid JSON: {error}") from error
    except RecursionError as error:  # absurdly deep nesting; still a client error
        raise InvalidRequest("body nests too deeply") from error
    except ValueError as error:  # int() refuses more than 4300 digits (sys.int_info)
        raise InvalidRequest("body is not valid JSON: a number is too long") from error
    if not isinstance(doc, dict):
        raise InvalidRequest(f"body must be a JSON object, got {type(doc).__name__}")
    return doc


def _envelope(doc: dict[str, Any]) -> dict[str, Any]:
    """The EventBridge fields every event carries; a missing one means a wrong shape."""
    for key in ("id", "source", "detail-type", "account", "region"):
        _string(doc, key, key)
    if not doc["id"]:
        raise InvalidRequest("id must not be empty")
    if len(doc["id"]) > MAX_EVENT_ID:
        raise InvalidRequest(f"id is longer than {MAX_EVENT_ID} characters")
    if not isinstance(doc.get("detail"), dict):
        raise InvalidRequest("detail must be a JSON object")
    return doc


def _string(doc: dict[str, Any], key: str, where: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str):
        found = "missing" if value is None else f"a {type(value).__name__}"
        raise InvalidRequest(f"{where} must be a string, is {found}")
    return value


def _short(value: object, limit: int = 80) -> str:
    """A value for an error message, cut so a hostile body cannot flood the logs."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _optional_string(doc: dict[str, Any], key: str) -> str | None:
    """Tag and digest are informational: absent (digest-only pushes) or odd values are fine."""
    value = doc.get(key)
    return value if isinstance(value, str) else None


@dataclass(frozen=True, slots=True)
class PruneRequest:
    """POST /prune: which repositories (() = all), whether to delete, whether to wait."""

    repositories: tuple[str, ...] = ()
    dry_run: bool = False
    wait: bool = False


def parse_prune_request(body: bytes) -> PruneRequest:
    """An empty body means: every repository, for real, in the background."""
    doc = json_object(body) if body.strip() else {}
    unknown = sorted(set(doc) - PRUNE_FIELDS)
    if unknown:
        # Name one (a body may hold thousands) and what is allowed, which is what helps.
        more = f" and {len(unknown) - 1} more" if len(unknown) > 1 else ""
        allowed = ", ".join(sorted(PRUNE_FIELDS))
        raise InvalidRequest(f"unknown field {unknown[0][:64]!r}{more} (allowed: {allowed})")
    for flag in ("dry_run", "wait"):
        if not isinstance(doc.get(flag, False), bool):
            raise InvalidRequest(f"{flag} must be true or false")
    return PruneRequest(
        repositories=_repository_list(doc),
        dry_run=doc.get("dry_run", False),
        wait=doc.get("wait", False),
    )


def _repository_list(doc: dict[str, Any]) -> tuple[str, ...]:
    if "repositories" not in doc:
        return ()
    names = doc["repositories"]
    # An empty list must not fall through to "all": that would turn "nothing" into everything.
    if not isinstance(names, list) or not 1 <= len(names) <= MAX_PRUNE_REPOSITORIES:
        raise InvalidRequest(
            f"repositories must be a list of 1 to {MAX_PRUNE_REPOSITORIES} names; "
            "omit it to prune every repository"
        )
    bad = [name for name in names if not is_repository_name(name)]
    if bad:
        raise InvalidRequest(f"not valid repository names: {', '.join(map(_short, bad[:5]))}")
    return tuple(dict.fromkeys(names))
