"""Push notifications that OCI registries send themselves, parsed into the receiver's events.

Pure, like `events`: no I/O, no clock. Two shapes:

- CNCF distribution's notification envelope
  (https://distribution.github.io/distribution/about/notifications/): `{"events": [...]}`,
  each event with `id`, `action` and `target.repository`. A manifest push asks for a prune;
  blob pushes (`target.mediaType` a layer or `application/octet-stream`), pulls, mounts and
  deletes are acknowledged and ignored, which also stops loops: our own deletions come back.
- Harbor's webhook in its default payload format
  (https://goharbor.io/docs/main/working-with-projects/project-configuration/configure-webhooks/):
  `{"type": "PUSH_ARTIFACT", "occur_at": ..., "event_data": {"repository": {"repo_full_name":
  ...}, "resources": [...]}}`. Harbor sends no event id, so the id is made from what a retry
  repeats (type, time, repository, first digest), and dedupe still works.

Neither names an account or region: those stay empty, which a receiver for one OCI registry
serves (its scope has neither).
"""

from __future__ import annotations

import hashlib
from typing import Any

from cleaner.errors import InvalidRequest
from cleaner.planning.names import is_repository_name
from cleaner.receiver.events import Ignored, PushEvent, event_from, json_object

MAX_EVENTS = 1000
"""A bound on one delivery's work (the body is at most 256 KiB anyway)."""
HARBOR_PUSH = "PUSH_ARTIFACT"
MANIFEST_TYPES = frozenset(
    {
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
    }
)

Parsed = PushEvent | Ignored


def parse_delivery(body: bytes) -> list[Parsed]:
    """Every event of one delivery (EventBridge: one; a distribution envelope: several),
    each a push or an ignored one; InvalidRequest for anything malformed."""
    doc = json_object(body)
    if "events" in doc and "detail-type" not in doc:
        return _distribution(doc["events"])
    if "event_data" in doc and "type" in doc:
        return [_harbor(doc)]
    return [event_from(doc)]


def _distribution(events: object) -> list[Parsed]:
    if not isinstance(events, list) or len(events) > MAX_EVENTS:
        raise InvalidRequest(f"events must be a list of at most {MAX_EVENTS} events")
    return [_distribution_event(event, f"events[{i}]") for i, event in enumerate(events)]


def _distribution_event(event: object, where: str) -> Parsed:
    if not isinstance(event, dict):
        raise InvalidRequest(f"{where} must be a JSON object")
    event_id = _text(event, "id", where)
    action = event.get("action")
    if action != "push":
        return Ignored(event_id, f"action {_short(action)} is not a push")
    target = event.get("target")
    if not isinstance(target, dict):
        raise InvalidRequest(f"{where}.target must be a JSON object")
    media_type = target.get("mediaType")
    if not isinstance(media_type, str) or media_type not in MANIFEST_TYPES:
        return Ignored(event_id, f"a push of {_short(media_type)}, not of a manifest")
    repository = _repository(target.get("repository"), f"{where}.target.repository")
    return _push(event_id, repository, target)


def _harbor(doc: dict[str, Any]) -> Parsed:
    kind = doc.get("type")
    data = doc.get("event_data")
    if not isinstance(data, dict):
        raise InvalidRequest("event_data must be a JSON object")
    repository_doc = data.get("repository")
    if not isinstance(repository_doc, dict):
        raise InvalidRequest("event_data.repository must be a JSON object")
    name = repository_doc.get("repo_full_name")
    resources = data.get("resources")
    first = resources[0] if isinstance(resources, list) and resources else {}
    first = first if isinstance(first, dict) else {}
    event_id = _harbor_id(kind, doc.get("occur_at"), name, first.get("digest"))
    if kind != HARBOR_PUSH:
        return Ignored(event_id, f"type {_short(kind)} is not {HARBOR_PUSH}")
    repository = _repository(name, "event_data.repository.repo_full_name")
    return _push(event_id, repository, first)


def _push(event_id: str, repository: str, target: dict[str, Any]) -> PushEvent:
    tag, digest = _optional(target, "tag"), _optional(target, "digest")
    return PushEvent(event_id, account="", region="", repository=repository, tag=tag, digest=digest)


def _harbor_id(*parts: object) -> str:
    seed = "\x00".join(str(part) for part in parts)
    return "harbor-" + hashlib.sha256(seed.encode("utf-8", "surrogateescape")).hexdigest()[:32]


def _repository(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise InvalidRequest(f"{where} must be a string")
    if not is_repository_name(value):
        raise InvalidRequest(f"{where} {_short(value)} is not a valid name")
    return value


def _text(doc: dict[str, Any], key: str, where: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not value or len(value) > 128:
        raise InvalidRequest(f"{where}.{key} must be a string of 1 to 128 characters")
    return value


def _optional(doc: dict[str, Any], key: str) -> str | None:
    value = doc.get(key)
    return value if isinstance(value, str) and value else None


def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
