"""Paged listings: `/v2/_catalog` and `/v2/<name>/tags/list`.

The distribution spec (https://github.com/opencontainers/distribution-spec/blob/main/spec.md,
"Listing Tags", and the catalog extension) pages with `n` and `last`, the next page named by
a `Link: <url>; rel="next"` header (RFC 8288). Registries differ: distribution 2.8 pages the
catalog but ignores `n` on tags/list and sends every tag without a `Link`; some send a full
page and no `Link`. So: follow `Link` while there is one; without one, a full page is asked
again from its last entry, and a page that brings nothing new ends the listing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from urllib.parse import quote, urljoin

from cleaner.errors import RegistryError

PAGE_SIZE = 1000
MAX_PAGES = 100_000
"""A guard against a registry whose `Link` never ends."""
_NEXT = re.compile(r'<([^>]*)>\s*;[^,]*\brel="?next"?', re.IGNORECASE)

Fetch = Callable[[str], Awaitable[tuple[bytes, str | None]]]
"""GET a path: the body, and the response's `Link` header if any."""


def next_link(link: str | None, base: str) -> str | None:
    """The `rel="next"` target of a Link header, resolved against the page's URL."""
    if not link:
        return None
    match = _NEXT.search(link)
    return urljoin(base, match[1]) if match else None


async def paged(fetch: Fetch, path: str, key: str, page_size: int = PAGE_SIZE) -> list[str]:
    """Every entry of the `key` list (`repositories`, `tags`) across pages, in order, once."""
    seen: dict[str, None] = {}
    url = f"{path}?n={page_size}"
    for _ in range(MAX_PAGES):
        body, link = await fetch(url)
        entries = _entries(body, key, path)
        fresh = [e for e in entries if e not in seen]
        seen.update(dict.fromkeys(fresh))
        following = next_link(link, url)
        if following is not None and fresh:
            url = following
        elif following is None and fresh and len(entries) >= page_size:
            url = f"{path}?n={page_size}&last={quote(entries[-1], safe='')}"
        else:
            return list(seen)
    raise RegistryError(f"{path}: more than {MAX_PAGES} pages", code="TOO_MANY_PAGES")


def _entries(body: bytes, key: str, path: str) -> list[str]:
    try:
        value = json.loads(body).get(key)
    except (ValueError, AttributeError) as error:
        raise RegistryError(f"{path}: not a JSON listing", code="BAD_RESPONSE") from error
    if value is None:  # distribution answers `"tags": null` for a repository with none
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RegistryError(f"{path}: {key} is not a list of names", code="BAD_RESPONSE")
    return value
