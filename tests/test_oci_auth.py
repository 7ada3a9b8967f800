"""Authenticating to an OCI registry: challenges, tokens, and where credentials come from.

The registry is the real distribution server behind our own authenticating front and token
server (`tests/support/oci_auth.py`); credential helpers are real programs on PATH.
"""

from __future__ import annotations

import base64
import json
import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cleaner.engine import Engine, SweepRequest
from cleaner.errors import ConfigError, RegistryError
from cleaner.planning.model import Repository
from cleaner.planning.policy_file import parse_policy_file
from cleaner.registries.oci import OciRegistry
from cleaner.registries.oci.auth import Login, find_login, host_of, parse_challenge
from tests.support.oci import Pusher
from tests.support.oci_auth import LOGIN, USER, gated
from tests.support.policies import keep_newest_rule


def test_a_bearer_challenge_is_read_with_its_quoted_parameters() -> None:
    challenge = parse_challenge(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/busybox:pull,push"'
    )
    assert challenge is not None and challenge.scheme == "bearer"
    assert challenge.params == {
        "realm": "https://auth.docker.io/token",
        "service": "registry.docker.io",
        "scope": "repository:library/busybox:pull,push",
    }


async def test_a_sweep_through_a_bearer_token_server(distribution: str) -> None:
    push = Pusher(distribution)
    for day in (1, 2, 3):
        push.image("bearer/app", f"v{day}", created=f"2026-11-0{day}T00:00:00Z")
    policy = parse_policy_file(
        {
            "repositories": [{"match": "*", "rules": [keep_newest_rule(1)]}],
            "protect": {"newer_than": "0s", "in_use": False},
        }
    )
    async with gated(distribution) as gate, OciRegistry.connect(gate.url, login=LOGIN) as registry:
        await registry.ping()
        request = SweepRequest(policy, datetime.now(UTC), ("bearer/app",), apply=True)
        report = await Engine(registry).run(request)
    assert report.ok, report
    assert push.tags("bearer/app") == ["v3"]
    assert {"repository:bearer/app:pull", "repository:bearer/app:delete"} <= set(gate.asked)
    assert gate.asked[0] == "<none>"  # ping: GET /v2/ is challenged without a scope
    assert len(gate.asked) < 10  # tokens are reused, not fetched per request


async def test_without_credentials_the_token_server_refusal_is_a_registry_error(
    distribution: str,
) -> None:
    async with gated(distribution) as gate, OciRegistry.connect(gate.url) as registry:
        with pytest.raises(RegistryError, match="token server"):
            await registry.images(Repository("bearer/app"))


async def test_basic_auth_when_the_registry_asks_for_it(distribution: str) -> None:
    Pusher(distribution).image("basic/app", "v1", created="2026-11-01T00:00:00Z")
    async with gated(distribution, "basic") as gate:
        async with OciRegistry.connect(gate.url, login=LOGIN) as registry:
            images = await registry.images(Repository("basic/app"))
        assert [i.tags for i in images] == [("v1",)]
        wrong = Login(USER, "wrong", "--registry-username")
        async with OciRegistry.connect(gate.url, login=wrong) as registry:
            with pytest.raises(RegistryError, match="refused the credentials as ci"):
                await registry.images(Repository("basic/app"))


def test_flags_win_and_a_username_needs_the_password(tmp_path: Path) -> None:
    environ = {"DOCKER_CONFIG": str(tmp_path)}
    assert find_login("http://r:5000", username="u", password="p", environ=environ) == Login(
        "u", "p", "--registry-username"
    )
    with pytest.raises(ConfigError, match="CLEANER_REGISTRY_PASSWORD"):
        find_login("http://r:5000", username="u", environ=environ)
    assert find_login("http://r:5000", environ=environ) is None  # no config.json: anonymous


def test_docker_config_auths_are_found_by_host(tmp_path: Path) -> None:
    encoded = base64.b64encode(b"robot:token-1").decode()
    config = {"auths": {"https://reg.example:5000": {"auth": encoded}, "other": {"auth": "x"}}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    found = find_login("https://reg.example:5000", environ={"DOCKER_CONFIG": str(tmp_path)})
    assert found is not None and (found.username, found.password) == ("robot", "token-1")
    assert "token-1" not in repr(found)


def test_a_credential_helper_is_run_with_the_host_on_stdin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    helper = tmp_path / "bin" / "docker-credential-test"
    helper.parent.mkdir()
    helper.write_text(
        "#!/bin/sh\nread host\n"
        '[ "$1" = get ] && [ "$host" = "reg.example" ] || exit 1\n'
        'echo \'{"ServerURL":"reg.example","Username":"helped","Secret":"from-helper"}\'\n'
    )
    helper.chmod(helper.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{helper.parent}{os.pathsep}{os.environ['PATH']}")
    config = {"credHelpers": {"reg.example": "test"}, "auths": {"reg.example": {"auth": "eA=="}}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    environ = {"DOCKER_CONFIG": str(tmp_path)}

    found = find_login("https://reg.example", environ=environ)

    assert found is not None and (found.username, found.password) == ("helped", "from-helper")
    assert find_login("https://elsewhere.example", environ=environ) is None


def test_hosts_compare_without_the_default_port() -> None:
    assert host_of("https://Reg.Example:443/v2/") == "reg.example"
    assert host_of("http://127.0.0.1:5000") == "127.0.0.1:5000"
    assert host_of("127.0.0.1:5000") == "127.0.0.1:5000"


async def test_a_listing_reads_each_manifest_once_and_probes_referrers_once(
    distribution: str,
) -> None:
    """Manifests and configs never change under a digest: a second listing only asks
    which digest each tag names; the missing referrers API costs one 404, not one per image."""
    push = Pusher(distribution)
    for i in range(5):
        push.image("counted/app", f"v{i}", created="2026-11-01T00:00:00Z", salt=str(i))
    async with gated(distribution) as gate, OciRegistry.connect(gate.url, login=LOGIN) as registry:
        await registry.images(Repository("counted/app"))
        first = list(gate.requests)
        gate.requests.clear()
        await registry.images(Repository("counted/app"))
    assert sum("/referrers/" in path for _, path in first) == 1
    # 5 manifests, and one config: the five share it (same created time, same platform)
    assert sum(m == "GET" and "/manifests/" in p for m, p in first) == 5
    assert sum("/blobs/" in path for _, path in first) == 1
    assert sorted({m for m, _ in gate.requests}) == ["GET", "HEAD"]
    assert sum(m == "GET" for m, _ in gate.requests) == 1  # tags/list
