"""HTTP to one OCI registry: authentication on challenge, retries, errors as RegistryError.

Every request names the token scope it needs (`repository:<name>:pull`, `...:pull,push`,
`...:delete`, `registry:catalog:*`); a bearer token is fetched the first time a request
with that scope is challenged and reused until it is refused. Transient answers (429, 5xx,
a dropped connection) are retried with jittered backoff.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urljoin

import aiohttp

from cleaner.clients.retry import Backoff, retrying
from cleaner.errors import RegistryError, RepositoryNotFoundError
from cleaner.registries.oci.auth import Challenge, Login, parse_challenge

log = logging.getLogger(__name__)

TIMEOUT = aiohttp.ClientTimeout(total=60, connect=10)
TRANSIENT = frozenset({429, 500, 502, 503, 504})
DEFAULT_BACKOFF = Backoff(attempts=5, base_s=0.1, cap_s=2.0)
# Error codes of the distribution spec's error table that mean "no such repository".
_NOT_FOUND = frozenset({"NAME_UNKNOWN"})


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: Any
    """The response's headers (case-insensitive lookup)."""
    body: bytes
    url: str

    def error_code(self) -> str:
        """The first `errors[].code` of a spec error body, else the HTTP status."""
        try:
            errors = json.loads(self.body).get("errors") or []
            return str(errors[0]["code"])
        except (ValueError, AttributeError, LookupError, TypeError):
            return str(self.status)


class _Transient(Exception):
    def __init__(self, what: str) -> None:
        super().__init__(what)


@dataclass(slots=True)
class Transport:
    """Requests to one registry's base URL through one aiohttp session."""

    session: aiohttp.ClientSession
    base_url: str
    login: Login | None = None
    backoff: Backoff = DEFAULT_BACKOFF
    _tokens: dict[str, tuple[str, float]] = field(default_factory=dict)
    """Scope -> (Authorization value, monotonic expiry)."""

    async def request(
        self,
        method: str,
        path: str,
        *,
        scope: str,
        headers: dict[str, str] | None = None,
        data: bytes | None = None,
    ) -> Answer:
        """Any answer but a transient one (retried) or an authentication failure (raised)."""
        url = urljoin(self.base_url + "/", path.lstrip("/")) if "://" not in path else path

        async def attempt() -> Answer:
            return await self._authenticated(method, url, scope, headers or {}, data)

        try:
            return await retrying(
                attempt,
                retryable=lambda e: isinstance(e, _Transient | aiohttp.ClientConnectionError),
                backoff=self.backoff,
                what=f"{method} {path}",
            )
        except (_Transient, aiohttp.ClientError, TimeoutError) as error:
            raise RegistryError(
                f"{method} {path}: {error or type(error).__name__}",
                code="UNAVAILABLE",
                operation=method,
            ) from error

    async def _authenticated(
        self, method: str, url: str, scope: str, headers: dict[str, str], data: bytes | None
    ) -> Answer:
        answer = await self._send(method, url, self._authorization(scope), headers, data)
        if answer.status != 401:
            return answer
        challenge = parse_challenge(answer.headers.get("WWW-Authenticate", ""))
        authorization = await self._answer(challenge, scope, url)
        answer = await self._send(method, url, authorization, headers, data)
        if answer.status == 401:
            self._tokens.pop(scope, None)
            who = f"as {self.login.username} ({self.login.source})" if self.login else "anonymously"
            raise RegistryError(
                f"{method} {url}: the registry refused the credentials {who}",
                code="UNAUTHORIZED",
                operation=method,
            )
        return answer

    def _authorization(self, scope: str) -> str | None:
        token = self._tokens.get(scope)
        if token is not None and token[1] > time.monotonic():
            return token[0]
        return None

    async def _answer(self, challenge: Challenge | None, scope: str, url: str) -> str:
        """The Authorization value a challenge asks for, remembered for the scope."""
        if challenge is not None and challenge.scheme == "bearer":
            value, lifetime = await self._bearer(challenge, scope)
        elif challenge is not None and challenge.scheme == "basic" and self.login is not None:
            value, lifetime = self.login.basic(), float("inf")
        else:
            what = challenge.scheme if challenge else "no WWW-Authenticate challenge"
            raise RegistryError(
                f"{url}: the registry wants credentials ({what}); give --registry-username "
                "and CLEANER_REGISTRY_PASSWORD, or log in with docker login",
                code="UNAUTHORIZED",
            )
        self._tokens[scope] = (value, time.monotonic() + lifetime)
        return value

    async def _bearer(self, challenge: Challenge, scope: str) -> tuple[str, float]:
        """GET the realm for a token (the token spec's "Requesting a Token")."""
        realm = challenge.params.get("realm")
        if not realm:
            raise RegistryError("a Bearer challenge without a realm", code="UNAUTHORIZED")
        query = {
            key: value
            for key, value in (
                ("scope", challenge.params.get("scope") or scope),
                ("service", challenge.params.get("service")),
            )
            if value  # `GET /v2/` needs no scope: asking for an empty one is not the same
        }
        headers = {"Authorization": self.login.basic()} if self.login else {}
        target = f"{realm}{'&' if '?' in realm else '?'}{urlencode(query)}"
        answer = await self._send("GET", target, None, headers, None)
        if answer.status != 200:
            raise RegistryError(
                f"token server {realm}: {answer.status} {answer.body[:200]!r}",
                code="UNAUTHORIZED",
            )
        try:
            doc = json.loads(answer.body)
            token = doc.get("token") or doc["access_token"]
            # The spec's default lifetime is 60 s; renew a little early.
            lifetime = max(float(doc.get("expires_in") or 60) - 5, 1)
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise RegistryError(f"token server {realm}: no token", code="UNAUTHORIZED") from error
        return f"Bearer {token}", lifetime

    async def _send(
        self,
        method: str,
        url: str,
        authorization: str | None,
        headers: dict[str, str],
        data: bytes | None,
    ) -> Answer:
        sent = dict(headers)
        if authorization:
            sent["Authorization"] = authorization
        async with self.session.request(
            method, url, headers=sent, data=data, allow_redirects=True, timeout=TIMEOUT
        ) as response:
            body = await response.read()
            if response.status in TRANSIENT:
                raise _Transient(f"{response.status} {body[:200]!r}")
            return Answer(response.status, response.headers, body, str(response.url))


def failed(answer: Answer, what: str, name: str = "") -> RegistryError:
    """The RegistryError for an unexpected answer; RepositoryNotFoundError for NAME_UNKNOWN."""
    code = answer.error_code()
    message = f"{what}: {answer.status} {code}"
    if code in _NOT_FOUND or (answer.status == 404 and name and code == "404"):
        return RepositoryNotFoundError(f"{name or what}: not found ({message})", code=code)
    return RegistryError(message, code=code, operation=what)
