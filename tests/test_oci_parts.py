"""The OCI adapter's pure parts: paging rules, time parsing, link headers, fallback tags."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from cleaner.registries.oci.age import parse_time
from cleaner.registries.oci.documents import Manifest, fallback_subject
from cleaner.registries.oci.paging import next_link, paged


def pages_of(tags: list[str], *, honours_n: bool, links: bool) -> tuple[list[str], object]:
    """A listing that pages as a registry may: with or without `Link`, honouring `n` and
    `last` or sending everything every time."""
    asked: list[str] = []

    async def fetch(url: str) -> tuple[bytes, str | None]:
        asked.append(url)
        query = dict(p.split("=") for p in url.partition("?")[2].split("&"))
        start = tags.index(query["last"]) + 1 if "last" in query and honours_n else 0
        size = int(query["n"]) if honours_n else len(tags)
        page = tags[start : start + size]
        more = honours_n and start + size < len(tags)
        link = f'</v2/r/tags/list?n={size}&last={page[-1]}>; rel="next"' if more and links else None
        return json.dumps({"tags": page}).encode(), link

    return asked, fetch


@pytest.mark.parametrize(
    ("honours_n", "links", "calls"),
    [(True, True, 3), (True, False, 3), (False, False, 2), (False, True, 2)],
)
async def test_every_tag_once_however_the_registry_pages(
    honours_n: bool, links: bool, calls: int
) -> None:
    tags = [f"t{i:02d}" for i in range(5)]
    asked, fetch = pages_of(tags, honours_n=honours_n, links=links)
    assert await paged(fetch, "/v2/r/tags/list", "tags", page_size=2) == tags  # type: ignore[arg-type]
    # Without Link, a full page is followed from its last tag; a registry that ignores n
    # then sends everything again, and a page with nothing new ends the listing.
    assert len(asked) == calls


def test_next_link_is_resolved_against_the_page() -> None:
    link = '</v2/_catalog?last=a%2Fb&n=1>; rel="next"'
    assert (
        next_link(link, "http://r:5000/v2/_catalog?n=1")
        == "http://r:5000/v2/_catalog?last=a%2Fb&n=1"
    )
    assert next_link('<x>; rel="prev"', "http://r/") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-02-01T10:00:00Z", datetime(2026, 2, 1, 10, tzinfo=UTC)),
        ("2026-02-01T10:00:00.123456789Z", datetime(2026, 2, 1, 10, 0, 0, 123456, tzinfo=UTC)),
        ("2026-02-01T12:00:00+02:00", datetime(2026, 2, 1, 10, tzinfo=UTC)),
        ("1970-01-01T00:00:00Z", None),  # SOURCE_DATE_EPOCH=0: pinned, not believed
        ("0001-01-01T00:00:00Z", None),
        ("yesterday", None),
        (12, None),
    ],
)
def test_created_times(text: object, expected: datetime | None) -> None:
    assert parse_time(text) == expected


def test_the_fallback_tag_names_a_sha256_subject_and_nothing_else() -> None:
    hex64 = "ab" * 32
    assert fallback_subject(f"sha256-{hex64}") == f"sha256:{hex64}"
    assert fallback_subject(f"sha256-{hex64}.sig") is None  # cosign's, handled by the graph
    assert fallback_subject("sha256-abc") is None


def test_an_index_without_a_media_type_field_is_still_an_index() -> None:
    body = json.dumps({"schemaVersion": 2, "manifests": [{"digest": "sha256:" + "c" * 64}]})
    manifest = Manifest.parse("sha256:x", body.encode())
    assert manifest.is_index and manifest.children == ("sha256:" + "c" * 64,)


def test_the_manifest_cache_forgets_the_least_recently_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from cleaner.lru import Lru
    from cleaner.registries.oci import adapter

    monkeypatch.setattr(adapter, "CACHED", 2)
    cache: Lru[int] = Lru(adapter.CACHED)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # now the most recent
    cache.put("c", 3)
    assert sorted(cache) == ["a", "c"]
