"""Who the cleaner is to an OCI registry, and how it proves it.

Credentials, first found wins: `--registry-username` with `CLEANER_REGISTRY_PASSWORD`; else
Docker's own `config.json` (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`):
the registry's `credHelpers` entry, else `credsStore`, each run as
`docker-credential-<name> get` with the host on stdin (the protocol of
https://github.com/docker/docker-credential-helpers), else its `auths` entry; else none
(anonymous).

Schemes, as the registry asks for them in `WWW-Authenticate` on a 401: `Basic`, or
`Bearer realm=...,service=...,scope=...`, the token flow of
https://distribution.github.io/distribution/spec/auth/token/ that Docker Hub, GHCR, Harbor
and zot use: a GET of the realm (with the credentials as Basic, if any) returns a token for
the scope, which then goes in `Authorization: Bearer`.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cleaner.errors import ConfigError

HELPER_TIMEOUT_S = 10.0
# One `key="value"` or `key=value` pair of a challenge (RFC 7235 auth-param).
_PARAM = re.compile(r'([A-Za-z][A-Za-z0-9_-]*)=(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))')
# Docker Hub's names for itself in config.json.
_DOCKER_HUB = ("https://index.docker.io/v1/", "index.docker.io", "docker.io")


@dataclass(frozen=True, slots=True)
class Login:
    username: str
    password: str = field(repr=False)
    source: str = ""
    """Where it came from (`--registry-username`, `credHelpers ecr-login`, ...), for errors."""

    def basic(self) -> str:
        pair = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(pair).decode()


@dataclass(frozen=True, slots=True)
class Challenge:
    """A `WWW-Authenticate` challenge: the scheme and its parameters (names lowercased)."""

    scheme: str
    params: Mapping[str, str]


def parse_challenge(header: str) -> Challenge | None:
    """`Bearer realm="https://auth.example/token",service="reg",scope="repository:a:pull"`."""
    scheme, _, rest = header.strip().partition(" ")
    if not scheme:
        return None
    params = {m[1].lower(): (m[2] if m[2] is not None else m[3]) for m in _PARAM.finditer(rest)}
    return Challenge(scheme.lower(), params)


def host_of(url: str) -> str:
    """`https://Reg.example:443/v2/` -> `reg.example`; the port stays unless it is the
    scheme's default, so config.json keys and image references compare equal."""
    parts = urlsplit(url if "//" in url else f"//{url}")
    host = (parts.hostname or "").lower()
    default = {"https": 443, "http": 80}.get(parts.scheme)
    port = parts.port
    return host if port is None or port == default else f"{host}:{port}"


def find_login(
    registry_url: str,
    *,
    username: str | None = None,
    password: str | None = None,
    environ: Mapping[str, str] = os.environ,
) -> Login | None:
    """The credentials for the registry (see the module docstring); None: anonymous."""
    if username is not None:
        if not password:
            raise ConfigError("--registry-username needs CLEANER_REGISTRY_PASSWORD")
        return Login(username, password, "--registry-username")
    if password:
        raise ConfigError("CLEANER_REGISTRY_PASSWORD needs --registry-username")
    return docker_config_login(host_of(registry_url), _config_path(environ))


def _config_path(environ: Mapping[str, str]) -> Path:
    folder = environ.get("DOCKER_CONFIG")
    return Path(folder) / "config.json" if folder else Path.home() / ".docker" / "config.json"


def docker_config_login(host: str, path: Path) -> Login | None:
    """What Docker's config.json holds for `host`: a helper's answer, or an `auths` entry."""
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise ConfigError(f"{path}: cannot be read as JSON: {error}") from error
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    helper = _entry(config.get("credHelpers"), host) or config.get("credsStore")
    if isinstance(helper, str) and helper:
        return helper_login(helper, host)
    return _auths_login(_entry(config.get("auths"), host), f"{path} auths")


def _entry(table: Any, host: str) -> Any:
    """The table's value for `host`, its keys written with or without a scheme or path."""
    if not isinstance(table, dict):
        return None
    for key, value in table.items():
        if isinstance(key, str) and _same_host(key, host):
            return value
    return None


def _same_host(key: str, host: str) -> bool:
    if host in ("docker.io", "registry-1.docker.io", "index.docker.io"):
        return key in _DOCKER_HUB or host_of(key) in ("docker.io", "index.docker.io")
    return host_of(key) == host


def _auths_login(entry: Any, source: str) -> Login | None:
    if not isinstance(entry, dict):
        return None
    if isinstance(entry.get("username"), str) and isinstance(entry.get("password"), str):
        return Login(entry["username"], entry["password"], source)
    encoded = entry.get("auth")
    if not isinstance(encoded, str) or not encoded:
        return None
    try:
        username, colon, password = base64.b64decode(encoded).decode().partition(":")
    except ValueError as error:
        raise ConfigError(f"{source}: 'auth' is not base64 of user:password") from error
    if not colon:
        raise ConfigError(f"{source}: 'auth' is not base64 of user:password")
    return Login(username, password, source)


def helper_login(helper: str, host: str) -> Login | None:
    """`docker-credential-<helper> get`, the host on stdin, JSON `{Username, Secret}` out;
    a helper that knows no credentials for the host exits non-zero: anonymous then."""
    program = f"docker-credential-{helper}"
    try:
        done = subprocess.run(  # noqa: S603 - the program name is the user's own config
            [program, "get"],
            input=host.encode(),
            capture_output=True,
            timeout=HELPER_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise ConfigError(f"credential helper {program}: {error}") from error
    if done.returncode != 0:
        return None
    try:
        answer = json.loads(done.stdout)
        return Login(str(answer["Username"]), str(answer["Secret"]), f"credHelpers {helper}")
    except (ValueError, KeyError, TypeError) as error:
        raise ConfigError(f"credential helper {program}: unreadable answer") from error
