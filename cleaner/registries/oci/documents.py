"""Manifests as an OCI registry serves them: media types and what the adapter reads from one.

Media types: image-spec `media-types.md` (OCI) and the Docker image manifest v2 schema 2
spec. The `Accept` header of every manifest request lists them all, indexes included:
distribution 2.8 answers 404 for an index when only single-manifest types are accepted.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from cleaner.planning.model import INDEX_MEDIA_TYPES

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST)
ACCEPT = ", ".join(MANIFEST_TYPES)
IMAGE_CONFIG_TYPES = frozenset(
    {"application/vnd.oci.image.config.v1+json", "application/vnd.docker.container.image.v1+json"}
)
MAX_CONFIG_BYTES = 1 << 20
"""A larger "config" is an artifact's payload, not an image config: not read."""
# The referrers tag schema of the distribution spec ("Referrers Tag Schema"): `<alg>-<ref>`.
_FALLBACK_TAG = re.compile(r"(sha256)-([0-9a-f]{64})")


@dataclass(frozen=True, slots=True)
class Manifest:
    """One manifest's text and what the adapter needs from it."""

    digest: str
    media_type: str
    text: str
    doc: dict[str, Any]

    @classmethod
    def parse(cls, digest: str, body: bytes, content_type: str = "") -> Manifest:
        text = body.decode("utf-8", "replace")
        try:
            doc = json.loads(text)
        except ValueError:
            doc = {}
        doc = doc if isinstance(doc, dict) else {}
        media_type = str(doc.get("mediaType") or content_type.split(";")[0].strip())
        if not media_type and isinstance(doc.get("manifests"), list):
            media_type = OCI_INDEX  # the mediaType field is optional in an OCI index
        return cls(digest, media_type, text, doc)

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_MEDIA_TYPES

    @property
    def children(self) -> tuple[str, ...]:
        entries = self.doc.get("manifests") if self.is_index else None
        if not isinstance(entries, list):
            return ()
        return tuple(
            e["digest"] for e in entries if isinstance(e, dict) and _is_digest(e.get("digest"))
        )

    @property
    def subject(self) -> str | None:
        subject = self.doc.get("subject")
        return (
            subject["digest"]
            if isinstance(subject, dict) and _is_digest(subject.get("digest"))
            else None
        )

    @property
    def config(self) -> dict[str, Any] | None:
        config = self.doc.get("config")
        return config if isinstance(config, dict) and _is_digest(config.get("digest")) else None

    @property
    def artifact_type(self) -> str:
        """`artifactType`, else the config's media type (image-spec manifest.md)."""
        given = self.doc.get("artifactType")
        if isinstance(given, str) and given:
            return given
        config = self.config
        return str(config.get("mediaType", "")) if config else ""

    @property
    def size(self) -> int:
        """Bytes of the config and layers (an index: its own text; children count apart)."""
        if self.is_index:
            return len(self.text.encode())
        parts = [self.config or {}, *(self.doc.get("layers") or [])]
        return sum(int(p.get("size") or 0) for p in parts if isinstance(p, dict))

    def readable_config(self) -> str | None:
        """The config digest worth a GET for its `created`: an image config of sane size."""
        config = self.config
        if config is None or config.get("mediaType") not in IMAGE_CONFIG_TYPES:
            return None
        return str(config["digest"]) if int(config.get("size") or 0) <= MAX_CONFIG_BYTES else None


def fallback_subject(tag: str) -> str | None:
    """`sha256-<hex>` (a referrers fallback tag) -> `sha256:<hex>`; None for other tags."""
    match = _FALLBACK_TAG.fullmatch(tag)
    return f"{match[1]}:{match[2]}" if match else None


def digest_of(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


def _is_digest(value: object) -> bool:
    return isinstance(value, str) and ":" in value
