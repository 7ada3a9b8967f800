"""What a manifest or a tag says about links between images, read from its text alone.

- an index (OCI index or Docker manifest list) lists its platform manifests, and buildx
  attestation manifests marked as such (`ChildRef`);
- an OCI 1.1 manifest may name its `subject`;
- a cosign tag `sha256-<hex>.sig|.att|.sbom` names the image it signs or describes.

Pure: `cleaner.engine.artifacts` feeds these facts to `cleaner.planning.graph.build_graph`.
"""

from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass
from typing import Any, TypeGuard


class Relation(enum.StrEnum):
    """How a dependent relates to its parent; the value reads "<value> of <parent>"."""

    CHILD = "child"
    ATTESTATION = "attestation"
    SIGNATURE = "signature"
    SBOM = "SBOM"
    REFERRER = "referrer"


@dataclass(frozen=True, slots=True)
class ChildRef:
    """One entry of an index: a platform manifest (CHILD) or a buildx ATTESTATION manifest."""

    digest: str
    relation: Relation = Relation.CHILD


@dataclass(frozen=True, slots=True)
class ManifestFacts:
    """What the graph needs from one manifest's text."""

    children: tuple[ChildRef, ...] = ()
    subject: str | None = None


# buildx marks attestation entries so (moby/buildkit docs/attestations/attestation-storage.md)
_REFERENCE_TYPE = "vnd.docker.reference.type"
_UNKNOWN_PLATFORM = {"architecture": "unknown", "os": "unknown"}
_COSIGN_TAG = re.compile(r"(sha256|sha384|sha512)-([0-9a-f]+)\.(sig|att|sbom)")
_HEX_LENGTH = {"sha256": 64, "sha384": 96, "sha512": 128}
_COSIGN_RELATION = {
    "sig": Relation.SIGNATURE,
    "att": Relation.ATTESTATION,
    "sbom": Relation.SBOM,
}


def manifest_facts(manifest_text: str) -> ManifestFacts:
    """Children and subject of any manifest; empty facts for unparsable text."""
    try:
        doc = json.loads(manifest_text)
    except (ValueError, RecursionError):
        return ManifestFacts()
    if not isinstance(doc, dict):
        return ManifestFacts()
    entries = doc.get("manifests")
    listed = entries if isinstance(entries, list) else []
    children = tuple(_child_ref(e) for e in listed if _has_digest(e))
    subject = doc.get("subject")
    return ManifestFacts(children, subject["digest"] if _has_digest(subject) else None)


def index_children(manifest_text: str) -> tuple[str, ...]:
    """Digests listed by an OCI index or Docker manifest list; () for anything else."""
    return tuple(ref.digest for ref in manifest_facts(manifest_text).children)


def manifest_subject(manifest_text: str) -> str | None:
    """The OCI 1.1 `subject.digest`, if the manifest has one."""
    return manifest_facts(manifest_text).subject


def cosign_subject(tag: str) -> str | None:
    """`sha256-<hex>.sig|.att|.sbom` -> `sha256:<hex>` (also sha384/sha512), else None."""
    parts = cosign_parts(tag)
    return parts[0] if parts else None


def _has_digest(value: Any) -> TypeGuard[dict[str, Any]]:
    return isinstance(value, dict) and isinstance(value.get("digest"), str)


def _child_ref(entry: dict[str, Any]) -> ChildRef:
    annotations = entry.get("annotations")
    marked = isinstance(annotations, dict) and (
        annotations.get(_REFERENCE_TYPE) == "attestation-manifest"
    )
    if marked or entry.get("platform") == _UNKNOWN_PLATFORM:
        return ChildRef(entry["digest"], Relation.ATTESTATION)
    return ChildRef(entry["digest"])


def cosign_parts(tag: str) -> tuple[str, Relation] | None:
    """`sha256-<hex>.sig` -> (`sha256:<hex>`, SIGNATURE); None for any other tag."""
    if not tag.startswith("sha"):  # cheap exit for the ordinary tags of a large repository
        return None
    match = _COSIGN_TAG.fullmatch(tag)
    if match is None or len(match[2]) != _HEX_LENGTH[match[1]]:
        return None
    return f"{match[1]}:{match[2]}", _COSIGN_RELATION[match[3]]
