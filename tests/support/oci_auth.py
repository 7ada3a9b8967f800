"""A token server and an authenticating front for a real registry, both aiohttp on loopback.

The front answers 401 with the challenge Docker Hub, GHCR and Harbor send
(`Bearer realm=...,service=...,scope=repository:<name>:<action>`, or `Basic`), and passes
authenticated requests on to the registry behind it, as a reverse proxy in front of
distribution would. Token server and front share the tokens they issued.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import unquote

import aiohttp
from aiohttp import web

from cleaner.registries.oci.auth import Login
from tests.support.servers import loopback

USER, PASSWORD = "ci", "s3cret"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
SERVICE = "test-registry"
LOGIN = Login(USER, PASSWORD, "test")
_ACTIONS = {"GET": "pull", "HEAD": "pull", "PUT": "push", "POST": "push", "PATCH": "push",
            "DELETE": "delete"}  # fmt: skip
_HOP = {"Host", "Authorization", "Content-Length", "Transfer-Encoding", "Connection"}


@dataclass
class Gate:
    upstream: str
    scheme: str = "bearer"
    """"bearer" (a token from our token server) or "basic"."""
    issued: dict[str, str] = field(default_factory=dict)
    """Token -> the scope it grants."""
    asked: list[str] = field(default_factory=list)
    """Every scope the token server was asked for, in order."""
    url: str = ""
    referrers: dict[str, list[str]] | None = None
    """When set, the front answers the referrers API itself (distribution 2.8 has none):
    subject digest -> its referrers' digests."""
    harbor: dict[str, list[dict[str, str]]] | None = None
    """When set, the front also answers as Harbor's v2.0 API: repository -> its artifacts
    (`digest`, `push_time`, `pull_time`), as `GET .../artifacts` lists them."""
    github: dict[str, list[dict[str, str]]] | None = None
    """When set, the front also answers as GitHub's Packages API: `users/<owner>/<package>`
    or `orgs/<owner>/<package>` -> its versions (`name` the digest, `created_at`)."""
    requests: list[tuple[str, str]] = field(default_factory=list)
    """(method, path) of every request the front passed on."""

    async def token(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != _basic(USER, PASSWORD):
            return web.json_response({"errors": [{"code": "DENIED"}]}, status=401)
        self.asked.append(request.query.get("scope", "<none>"))
        scope = request.query.get("scope", "")
        token = f"t{len(self.issued)}"
        self.issued[token] = scope
        return web.json_response({"token": token, "expires_in": 300})

    def _needed(self, request: web.Request) -> str:
        path = request.path.removeprefix("/v2/")
        if not path or path.startswith("_catalog"):
            return "registry:catalog:*" if path else ""
        for marker in ("/manifests/", "/blobs/", "/tags/", "/referrers/"):
            if marker in path:
                name = path.split(marker)[0]
                return f"repository:{name}:{_ACTIONS[request.method]}"
        return ""

    def _allowed(self, request: web.Request, needed: str) -> bool:
        given = request.headers.get("Authorization", "")
        if self.scheme == "basic":
            return given == _basic(USER, PASSWORD)
        scope = self.issued.get(given.removeprefix("Bearer "))
        if scope is None or not needed:
            return scope is not None
        kind, _, actions = needed.rpartition(":")
        granted_kind, _, granted = scope.rpartition(":")
        return kind == granted_kind and actions in [*granted.split(","), "*"]

    async def front(self, request: web.Request) -> web.StreamResponse:
        needed = self._needed(request)
        if not self._allowed(request, needed):
            return web.json_response(
                {"errors": [{"code": "UNAUTHORIZED"}]},
                status=401,
                headers={"WWW-Authenticate": self._challenge(needed)},
            )
        self.requests.append((request.method, request.path))
        if "/referrers/" in request.path and self.referrers is not None:
            subject = request.path.rsplit("/", 1)[-1]
            entries = [{"mediaType": OCI_MANIFEST, "digest": d, "size": 1}
                       for d in self.referrers.get(subject, [])]  # fmt: skip
            index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
            return web.json_response(index, content_type=OCI_INDEX)
        return await self._forward(request)

    async def harbor_api(self, request: web.Request) -> web.Response:
        """`/api/v2.0/systeminfo` and `/api/v2.0/projects/{p}/repositories/{r}/artifacts`,
        Basic auth as Harbor's API takes it; a 404 unless `harbor` is set."""
        self.requests.append((request.method, request.path))
        if self.harbor is None:
            raise web.HTTPNotFound()
        if request.path == "/api/v2.0/systeminfo":
            return web.json_response({"harbor_version": "v2.11.0-test"})
        if request.headers.get("Authorization") != _basic(USER, PASSWORD):
            return web.json_response({"errors": [{"code": "UNAUTHORIZED"}]}, status=401)
        parts = request.raw_path.split("?")[0].split("/")  # still encoded: a%252Fb
        project, repository = parts[4], unquote(unquote(parts[6]))
        artifacts = self.harbor.get(f"{project}/{repository}", [])
        page = int(request.query.get("page", "1"))
        size = int(request.query.get("page_size", "10"))
        return web.json_response(artifacts[(page - 1) * size : page * size])

    async def github_api(self, request: web.Request) -> web.Response:
        """`/{orgs|users}/{owner}/packages/container/{package}/versions`, paged by `Link`."""
        self.requests.append((request.method, request.path))
        if request.headers.get("Authorization") != f"Bearer {PASSWORD}":
            return web.json_response({"message": "Requires authentication"}, status=401)
        parts = request.raw_path.split("?")[0].split("/")
        key = f"{parts[1]}/{parts[2]}/{unquote(parts[5])}"
        if self.github is None or key not in self.github:
            return web.json_response({"message": "Package not found."}, status=404)
        page, size = int(request.query.get("page", "1")), int(request.query["per_page"])
        versions = self.github[key][(page - 1) * size : page * size]
        more = page * size < len(self.github[key])
        following = f"{self.url}{request.raw_path.split('?')[0]}?per_page={size}&page={page + 1}"
        link = {"Link": f'<{following}>; rel="next"'}
        return web.json_response(versions, headers=link if more else None)

    def _challenge(self, needed: str) -> str:
        if self.scheme == "basic":
            return 'Basic realm="test"'
        scope = f',scope="{needed}"' if needed else ""
        return f'Bearer realm="{self.url}/token",service="{SERVICE}"{scope}'

    async def _forward(self, request: web.Request) -> web.Response:
        headers = {k: v for k, v in request.headers.items() if k not in _HOP}
        async with aiohttp.ClientSession() as session, session.request(
            request.method, self.upstream + request.path_qs, headers=headers,
            data=await request.read(), allow_redirects=False,
        ) as answer:  # fmt: skip
            body = await answer.read()
            out = {k: v for k, v in answer.headers.items() if k not in _HOP}
            if "Location" in out:  # uploads continue through the front, not around it
                out["Location"] = out["Location"].replace(self.upstream, self.url)
            return web.Response(status=answer.status, body=body, headers=out)


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@asynccontextmanager
async def gated(upstream: str, scheme: str = "bearer") -> AsyncIterator[Gate]:
    """The front and token server on one loopback port; yields the gate (its `url` set)."""
    gate = Gate(upstream, scheme)
    app = web.Application(client_max_size=16 << 20)
    app.router.add_get("/token", gate.token)
    app.router.add_route("*", "/v2/{tail:.*}", gate.front)
    app.router.add_get("/api/v2.0/{tail:.*}", gate.harbor_api)
    app.router.add_get("/{kind:orgs|users}/{tail:.*}", gate.github_api)
    async with loopback(app) as gate.url:
        yield gate
