"""GHCR's own record of when each version was pushed: GitHub's Packages API.

GHCR offers no `/v2/_catalog` and no push time on the registry API, but GitHub's REST API
lists a container package's versions, each a manifest digest (`name`) with `created_at`
("Get all package versions for a package owned by an organization / the authenticated
user", https://docs.github.com/en/rest/packages/packages). `created_at` is taken, not
`updated_at`: the latter moves whenever a tag moves, which is not the image getting newer.
The registry login's password (a token with `read:packages`) authenticates there too.

A repository `ghcr.io/<owner>/<package...>` is the package `<package...>` (its slashes
encoded) of `<owner>`, an organization or a user; which one is learnt from a 404.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC
from typing import Any
from urllib.parse import quote

from cleaner.registries.oci.age import parse_time
from cleaner.registries.oci.harbor import Times
from cleaner.registries.oci.paging import next_link
from cleaner.registries.oci.transport import Transport, failed

log = logging.getLogger(__name__)

API = "https://api.github.com"
PER_PAGE = 100  # the API's largest page
MAX_PAGES = 10_000
SCOPE = "github-api"
HEADERS = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}


class GithubPackages:
    """Push times by digest for one GHCR repository, from the package's versions."""

    def __init__(self, transport: Transport, api: str = API) -> None:
        self._http = transport
        self._api = api.rstrip("/")
        self._kinds: dict[str, str] = {}
        """Owner -> "orgs" or "users", once learnt."""

    async def times(self, name: str) -> dict[str, Times] | None:
        """None without a login (the API wants a token even for public packages) or a
        package: the ages then come from created times."""
        owner, _, package = name.partition("/")
        if not package or self._http.login is None:
            return None
        for kind in [self._kinds[owner]] if owner in self._kinds else ["orgs", "users"]:
            url = (
                f"{self._api}/{kind}/{owner}/packages/container/{quote(package, safe='')}/versions"
            )
            versions = await self._versions(url, name)
            if versions is not None:
                self._kinds[owner] = kind
                return _times(versions)
        log.warning("%s: no GitHub package found; ages from created times", name)
        return None

    async def _versions(self, url: str, name: str) -> list[dict[str, Any]] | None:
        """Every version, following `Link` pages; None when the package is not there."""
        found: list[dict[str, Any]] = []
        page: str | None = f"{url}?per_page={PER_PAGE}&state=active"
        for _ in range(MAX_PAGES):
            if page is None:
                return found
            answer = await self._http.request("GET", page, scope=SCOPE, headers=self._headers())
            if answer.status == 404:
                return None
            if answer.status != 200:
                raise failed(answer, f"GET GitHub package versions of {name}", name)
            try:
                versions = json.loads(answer.body)
            except ValueError:
                return found
            found += (
                [v for v in versions if isinstance(v, dict)] if isinstance(versions, list) else []
            )
            page = next_link(answer.headers.get("Link"), page)
        return found

    def _headers(self) -> dict[str, str]:
        login = self._http.login
        return {**HEADERS, "Authorization": f"Bearer {login.password}"} if login else HEADERS


def _times(versions: list[dict[str, Any]]) -> dict[str, Times]:
    found = {}
    for version in versions:
        digest, created = version.get("name"), parse_time(version.get("created_at"))
        if isinstance(digest, str) and created is not None:
            found[digest] = Times(created.astimezone(UTC), None)
    return found
