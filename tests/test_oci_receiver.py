"""Registries' own push notifications: parsing, and a real distribution server notifying the
real receiver, which prunes the pushed repository through the OCI adapter."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from cleaner import wiring
from cleaner.errors import InvalidRequest
from cleaner.planning.policy_file import parse_policy_file
from cleaner.receiver.events import Ignored, PushEvent
from cleaner.receiver.registry_events import parse_delivery
from cleaner.settings import EngineSettings, ServeSettings
from tests.support.fakes import until
from tests.support.oci import OCI_MANIFEST, Pusher, running_registry
from tests.support.policies import keep_newest_rule
from tests.support.servers import free_port

TOKEN = "oci-receiver-token"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def envelope(*events: dict[str, Any]) -> bytes:
    return json.dumps({"events": list(events)}).encode()


def distribution_event(
    event_id: str,
    action: str = "push",
    media_type: str = OCI_MANIFEST,
    repository: str = "team/app",
) -> dict[str, Any]:
    """The shape of the example in distribution's notifications documentation."""
    return {
        "id": event_id,
        "timestamp": "2026-12-02T10:00:00Z",
        "action": action,
        "target": {
            "mediaType": media_type,
            "size": 708,
            "digest": "sha256:" + "a" * 64,
            "length": 708,
            "repository": repository,
            "url": f"http://127.0.0.1:5000/v2/{repository}/manifests/sha256:{'a' * 64}",
            "tag": "v1",
        },
        "request": {
            "id": "r1",
            "addr": "127.0.0.1:4000",
            "host": "127.0.0.1:5000",
            "method": "PUT",
            "useragent": "skopeo",
        },
        "actor": {},
        "source": {"addr": "registry:5000", "instanceID": "i1"},
    }


def harbor(kind: str = "PUSH_ARTIFACT", repository: str = "library/app") -> bytes:
    """Harbor's default webhook payload, as its webhook documentation shows it."""
    return json.dumps(
        {
            "type": kind,
            "occur_at": 1733133600,
            "operator": "admin",
            "event_data": {
                "resources": [
                    {
                        "digest": "sha256:" + "b" * 64,
                        "tag": "v2",
                        "resource_url": f"harbor.example/{repository}:v2",
                    }
                ],
                "repository": {
                    "name": repository.split("/")[-1],
                    "namespace": "library",
                    "repo_full_name": repository,
                    "repo_type": "private",
                },
            },
        }
    ).encode()


def test_a_manifest_push_in_an_envelope_is_a_push_and_the_rest_is_ignored() -> None:
    events = parse_delivery(
        envelope(
            distribution_event("e1"),
            distribution_event("e2", media_type=LAYER),
            distribution_event("e3", action="pull"),
        )
    )
    assert events[0] == PushEvent("e1", "", "", "team/app", "v1", "sha256:" + "a" * 64)
    assert [type(e) for e in events[1:]] == [Ignored, Ignored]
    assert "not of a manifest" in events[1].reason  # type: ignore[union-attr]


def test_harbor_push_artifact_is_a_push_with_an_id_a_retry_repeats() -> None:
    [first], [again] = parse_delivery(harbor()), parse_delivery(harbor())
    assert isinstance(first, PushEvent) and first.repository == "library/app"
    assert first.tag == "v2" and first.event_id == again.event_id
    [deleted] = parse_delivery(harbor("DELETE_ARTIFACT"))
    assert isinstance(deleted, Ignored) and "PUSH_ARTIFACT" in deleted.reason


@pytest.mark.parametrize(
    "body",
    [
        envelope({"action": "push"}),  # no id
        envelope({**distribution_event("e1"), "target": "x"}),
        envelope(distribution_event("e1", repository="Not A Name")),
        json.dumps({"events": "x"}).encode(),
        json.dumps({"type": "PUSH_ARTIFACT", "event_data": {"repository": {}}}).encode(),
    ],
)
def test_a_malformed_registry_delivery_is_a_400(body: bytes) -> None:
    with pytest.raises(InvalidRequest):
        parse_delivery(body)


async def test_a_distribution_push_notification_prunes_that_repository(
    tmp_path: Path, aiohttp_client: Any
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    policy = parse_policy_file(
        {
            "repositories": [{"match": "notified/*", "rules": [keep_newest_rule(1)]}],
            "protect": {"newer_than": "0s", "in_use": False},
            "safety": {"keep_at_least": 0},
        }
    )
    settings = EngineSettings(policy_path="unused", registry=url)
    serve = ServeSettings(debounce_s=0.2)
    async with wiring.open_receiver(settings, serve, policy, TOKEN) as app:
        client = await aiohttp_client(app)
        events = str(client.make_url("/events"))
        with running_registry(tmp_path, notify=events, token=TOKEN, port=port):
            push = Pusher(url)
            for day in (1, 2, 3):
                await asyncio.to_thread(
                    push.image, "notified/app", f"v{day}", created=f"2026-11-0{day}T00:00:00Z"
                )
            await asyncio.to_thread(push.image, "other/app", "v1", created="2026-11-01T00:00:00Z")
            await asyncio.to_thread(push.image, "other/app", "v2", created="2026-11-02T00:00:00Z")
            await until(lambda: push.tags("notified/app") == ["v3"], within=20)
            async with client.get("/metrics") as answer:
                metrics = await answer.text()
            assert push.tags("other/app") == ["v1", "v2"]  # no policy entry: left alone
    accepted = [line for line in metrics.splitlines() if 'status="accepted"' in line]
    assert accepted and not accepted[0].endswith(" 0.0"), accepted


async def test_a_harbor_webhook_prunes_that_repository(
    distribution: str, aiohttp_client: Any
) -> None:
    push = Pusher(distribution)
    for day in (1, 2, 3):
        push.image("harbor/app", f"v{day}", created=f"2026-11-0{day}T00:00:00Z")
    policy = parse_policy_file(
        {
            "repositories": [{"match": "*", "rules": [keep_newest_rule(2)]}],
            "protect": {"newer_than": "0s", "in_use": False},
        }
    )
    settings = EngineSettings(policy_path="unused", registry=distribution)
    async with wiring.open_receiver(settings, ServeSettings(debounce_s=0.1), policy, TOKEN) as app:
        client = await aiohttp_client(app)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with client.post(
            "/events", data=harbor(repository="harbor/app"), headers=headers
        ) as answer:
            assert answer.status == 202, await answer.text()
            body = await answer.json()
        async with client.post("/events", data=harbor(repository="harbor/app")) as unauthorized:
            assert unauthorized.status == 401
        await until(lambda: push.tags("harbor/app") == ["v2", "v3"], within=20)
    assert body["status"] == "accepted" and body["repository"] == "harbor/app"


async def test_an_envelope_of_several_pushes_prunes_each_repository_once_answered(
    distribution: str, aiohttp_client: Any
) -> None:
    push = Pusher(distribution)
    for name in ("multi/a", "multi/b"):
        for day in (1, 2):
            push.image(name, f"v{day}", created=f"2026-11-0{day}T00:00:00Z")
    policy = parse_policy_file(
        {
            "repositories": [{"match": "multi/*", "rules": [keep_newest_rule(1)]}],
            "protect": {"newer_than": "0s", "in_use": False},
            "safety": {"keep_at_least": 0},
        }
    )
    body = envelope(
        distribution_event("m1", repository="multi/a"),
        distribution_event("m2", media_type=LAYER, repository="multi/b"),
        distribution_event("m3", repository="multi/b"),
    )
    settings = EngineSettings(policy_path="unused", registry=distribution)
    async with wiring.open_receiver(settings, ServeSettings(debounce_s=0.1), policy, TOKEN) as app:
        client = await aiohttp_client(app)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with client.post("/events", data=body, headers=headers) as answer:
            first = (answer.status, await answer.json())
        async with client.post("/events", data=body, headers=headers) as again:
            second = (again.status, await again.json())
        await until(lambda: push.tags("multi/a") == push.tags("multi/b") == ["v2"], within=20)
    assert first[0] == 202 and first[1]["status"] == "accepted", first
    # Redelivered (distribution retries until a 2xx): every event id was seen already.
    assert second[0] == 200 and second[1]["status"] == "duplicate", second
