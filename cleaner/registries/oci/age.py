"""An image's age on a registry that records no push time.

The distribution spec has no push time (a HEAD of a manifest or blob returns no
`Last-Modified` on distribution 2.8). So, in order:

0. the registry's own record where it has one (Harbor: `cleaner.registries.oci.harbor`);
1. the manifest's `org.opencontainers.image.created` annotation (image-spec annotations.md,
   https://github.com/opencontainers/image-spec/blob/main/annotations.md);
2. the image config's `created` (image-spec config.md: "combined date and time at which the
   image was created", RFC 3339);
3. for an index, the newest of its children's times;
4. for a referrer with neither, its subject's.

A builder may pin these: reproducible builds set `SOURCE_DATE_EPOCH`, often 0, so the image
claims 1970. A time before Docker existed (2013-03-20, the guard gcr-cleaner uses) is taken
as pinned and skipped. Where no usable time is left, the image counts as created now: it is
then the newest, which only keeps more. The `Image.age_from` word says which source won,
so every reason names it ("config created 3d ago"). A first-seen record
(`cleaner.registries.oci.first_seen`) replaces all of this where the times cannot be trusted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

CREATED_ANNOTATION = "org.opencontainers.image.created"
PUSHED = "pushed"
"""The registry's own push record (Harbor's `push_time`), where it keeps one."""
DOCKER_EXISTS = datetime(2013, 3, 20, tzinfo=UTC)
ANNOTATION = "annotation created"
CONFIG = "config created"
NEWEST_CHILD = "newest child"
UNKNOWN = "no created time, taken as"
# RFC 3339 with any number of fraction digits; Python parses at most 6.
_FRACTION = re.compile(r"(\.\d{6})\d+")


@dataclass(frozen=True, slots=True)
class Age:
    at: datetime
    source: str
    """One of PUSHED, ANNOTATION, CONFIG, NEWEST_CHILD, UNKNOWN, "subject ..." (or the
    first-seen word)."""

    @property
    def known(self) -> bool:
        return self.source != UNKNOWN


def parse_time(value: object) -> datetime | None:
    """An RFC 3339 time that can be trusted as a creation time; None otherwise."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(_FRACTION.sub(r"\1", value.strip()).replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment if moment >= DOCKER_EXISTS else None


def annotation_age(manifest: Mapping[str, Any]) -> Age | None:
    annotations = manifest.get("annotations")
    if not isinstance(annotations, dict):
        return None
    moment = parse_time(annotations.get(CREATED_ANNOTATION))
    return Age(moment, ANNOTATION) if moment else None


def config_age(config: Mapping[str, Any]) -> Age | None:
    moment = parse_time(config.get("created"))
    return Age(moment, CONFIG) if moment else None


def newest_child_age(children: Iterable[Age]) -> Age | None:
    known = [child.at for child in children if child.known]
    return Age(max(known), NEWEST_CHILD) if known else None


def of_subject(subject: Age) -> Age:
    """A referrer's age when it has none of its own: its subject's."""
    return Age(subject.at, f"subject {subject.source}")


def unknown_age(now: datetime) -> Age:
    return Age(now, UNKNOWN)
