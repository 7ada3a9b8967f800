"""Harbor's own record of push and pull times, the first age source where it exists.

Harbor keeps `push_time` and `pull_time` per artifact in its database and serves them on its
v2.0 API (`GET /api/v2.0/projects/{project}/repositories/{repository}/artifacts`, Harbor's
swagger `api/v2.0/swagger.yaml`). Whether a registry is Harbor is asked once,
`GET /api/v2.0/systeminfo`, which answers `harbor_version`; any other answer means not
Harbor, and the adapter falls back to created times. The API takes the registry login as
Basic credentials (a robot account works).

Only top-level artifacts are listed there; an index's platform manifests are its
`references` and get no times of their own, which is fine: they follow their index.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from cleaner.errors import RegistryError
from cleaner.registries.oci.age import parse_time
from cleaner.registries.oci.transport import Transport, failed

log = logging.getLogger(__name__)

PAGE_SIZE = 100  # Harbor's largest page
MAX_PAGES = 10_000
SCOPE = "harbor-api"
"""The token cache's key for API calls: they authenticate with Basic, not a token."""


@dataclass(frozen=True, slots=True)
class Times:
    pushed: datetime
    pulled: datetime | None
    """None: never pulled (Harbor writes 0001-01-01 then)."""


class HarborTimes:
    """Push and pull times by digest for one repository, when the registry is Harbor."""

    def __init__(self, transport: Transport) -> None:
        self._http = transport
        self._is_harbor: bool | None = None

    async def times(self, name: str) -> dict[str, Times] | None:
        """Digest -> times for the repository's artifacts; None when this is not Harbor."""
        if self._is_harbor is None:
            self._is_harbor = await self._probe()
        if not self._is_harbor:
            return None
        project, _, repository = name.partition("/")
        if not repository:  # Harbor names are project/repository
            return None
        # The API wants a repository's own slashes encoded twice ("a/b" -> "a%252Fb").
        path = (
            f"/api/v2.0/projects/{quote(project, safe='')}/repositories/"
            f"{quote(quote(repository, safe=''), safe='')}/artifacts"
        )
        found: dict[str, Times] = {}
        for page in range(1, MAX_PAGES + 1):
            artifacts = await self._page(path, page, name)
            found.update(_times(artifacts))
            if len(artifacts) < PAGE_SIZE:
                break
        return found

    async def _probe(self) -> bool:
        try:
            answer = await self._http.request(
                "GET", "/api/v2.0/systeminfo", scope=SCOPE, headers=self._headers()
            )
        except RegistryError:  # a registry that challenges everything: not Harbor's API
            return False
        try:
            harbor = answer.status == 200 and "harbor_version" in json.loads(answer.body)
        except (ValueError, TypeError):
            harbor = False
        log.info("%s: %s", self._http.base_url, "Harbor: push times from its API" if harbor
                 else "not Harbor: ages from created times")  # fmt: skip
        return harbor

    async def _page(self, path: str, page: int, name: str) -> list[dict[str, Any]]:
        answer = await self._http.request(
            "GET",
            f"{path}?page={page}&page_size={PAGE_SIZE}&with_tag=false",
            scope=SCOPE,
            headers=self._headers(),
        )
        if answer.status == 404:
            return []
        if answer.status != 200:
            raise failed(answer, f"GET Harbor artifacts of {name}", name)
        try:
            artifacts = json.loads(answer.body)
        except ValueError:
            return []
        return [a for a in artifacts if isinstance(a, dict)] if isinstance(artifacts, list) else []

    def _headers(self) -> dict[str, str]:
        login = self._http.login
        return {"Authorization": login.basic()} if login else {}


def _times(artifacts: list[dict[str, Any]]) -> dict[str, Times]:
    found = {}
    for artifact in artifacts:
        digest, pushed = artifact.get("digest"), _time(artifact.get("push_time"))
        if isinstance(digest, str) and pushed is not None:
            found[digest] = Times(pushed, parse_time(artifact.get("pull_time")))
    return found


def _time(value: object) -> datetime | None:
    moment = parse_time(value)
    return moment.astimezone(UTC) if moment else None
