"""Pure parsing of what the receiver is sent: the verbatim AWS samples first."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cleaner.errors import InvalidRequest
from cleaner.planning.names import is_repository_name
from cleaner.receiver.events import (
    Ignored,
    PruneRequest,
    PushEvent,
    Scope,
    parse_event,
    parse_prune_request,
)

SAMPLES = Path(__file__).parent / "data" / "events"


def sample(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((SAMPLES / f"{name}.json").read_text())
    return doc


def body(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def test_the_verbatim_push_sample_is_a_push_despite_its_60_character_digest() -> None:
    raw = (SAMPLES / "push.json").read_bytes()
    event = parse_event(raw)
    assert event == PushEvent(
        event_id="13cde686-328b-6117-af20-0e5566167482",
        account="123456789012",
        region="us-west-2",
        repository="my-repository-name",
        tag="latest",
        digest="sha256:7f5b2640fe6fb4f46592dfd3410c4a79dac4f89e4782432e0378abcd1234",
    )
    assert event.digest is not None and len(event.digest.removeprefix("sha256:")) == 60


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("delete", "action-type 'DELETE' is not PUSH"),
        ("scan", "detail-type 'ECR Image Scan' is not a push"),
        ("archive", "action-type 'UPDATE_STORAGE_CLASS' is not PUSH"),
        ("replication", "detail-type 'ECR Replication Action' is not a push"),
    ],
)
def test_every_other_verbatim_sample_is_ignored_with_a_reason(name: str, reason: str) -> None:
    event = parse_event((SAMPLES / f"{name}.json").read_bytes())
    assert event == Ignored(sample(name)["id"], reason)


def test_every_sample_in_the_shared_folder_is_covered() -> None:
    names = {p.stem for p in SAMPLES.glob("*.json")}
    assert names == {"push", "delete", "scan", "archive", "replication"}
    for name in names:  # none of them is a client error
        assert isinstance(parse_event((SAMPLES / f"{name}.json").read_bytes()), PushEvent | Ignored)


def test_a_failed_push_is_ignored() -> None:
    doc = sample("push")
    doc["detail"]["result"] = "FAILURE"
    assert parse_event(body(doc)) == Ignored(doc["id"], "push result 'FAILURE' is not SUCCESS")


def test_a_push_from_another_source_is_ignored() -> None:
    doc = sample("push") | {"source": "my.app"}
    assert isinstance(parse_event(body(doc)), Ignored)


def test_a_digest_only_push_without_a_tag_is_still_a_push() -> None:
    doc = sample("push")
    del doc["detail"]["image-tag"]
    doc["detail"]["image-digest"] = "sha256:EXAMPLE"
    event = parse_event(body(doc))
    assert isinstance(event, PushEvent) and event.tag is None
    assert event.digest == "sha256:EXAMPLE"


def test_real_pushes_carry_media_types_which_are_accepted() -> None:
    doc = sample("push")
    doc["detail"]["manifest-media-type"] = "application/vnd.oci.image.manifest.v1+json"
    doc["detail"]["artifact-media-type"] = "application/vnd.oci.image.config.v1+json"
    assert isinstance(parse_event(body(doc)), PushEvent)


def with_detail(**changes: Any) -> bytes:
    doc = sample("push")
    for key, value in changes.items():
        key = key.replace("_", "-")
        if value is None:
            doc["detail"].pop(key)
        else:
            doc["detail"][key] = value
    return body(doc)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        pytest.param(b"", "not valid JSON", id="empty body"),
        pytest.param(b"{", "not valid JSON", id="truncated JSON"),
        pytest.param(b"\xff\xfe", "not valid JSON", id="not UTF-8"),
        pytest.param(b"[1, 2]", "must be a JSON object", id="a list"),
        pytest.param(b'"push"', "must be a JSON object", id="a string"),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, "nests too deeply", id="deep nesting"),
        pytest.param(body({"id": "x"}), "source must be a string", id="no envelope"),
        pytest.param(
            body(sample("push") | {"id": ""}), "id must not be empty", id="empty event id"
        ),
        pytest.param(body(sample("push") | {"id": 7}), "id must be a string", id="numeric id"),
        pytest.param(body(sample("push") | {"detail": []}), "detail must be", id="detail list"),
        pytest.param(
            body({k: v for k, v in sample("push").items() if k != "region"}),
            "region must be a string",
            id="no region",
        ),
        pytest.param(with_detail(action_type=None), "action-type", id="no action-type"),
        pytest.param(with_detail(result=1), "detail.result must be a string", id="numeric result"),
        pytest.param(with_detail(repository_name=None), "missing", id="no repository"),
        pytest.param(with_detail(repository_name="My-Repo"), "not a valid", id="uppercase"),
        pytest.param(with_detail(repository_name="a"), "not a valid", id="one character"),
        pytest.param(with_detail(repository_name="a" * 257), "not a valid", id="257 characters"),
        pytest.param(with_detail(repository_name="team//app"), "not a valid", id="empty segment"),
        pytest.param(with_detail(repository_name="/app"), "not a valid", id="leading slash"),
        pytest.param(with_detail(repository_name="app-"), "not a valid", id="trailing dash"),
        pytest.param(with_detail(repository_name=["app"]), "not a valid", id="list name"),
        pytest.param(with_detail(repository_name="../etc"), "not a valid", id="dots"),
    ],
)
def test_malformed_bodies_are_client_errors(raw: bytes, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        parse_event(raw)


@pytest.mark.parametrize(
    "name",
    ["ab", "team/app", "docker-hub/alpine", "a.b_c__d---e", "x1/y2/z3", "a" * 256, "0x"],
)
def test_ecr_repository_names_are_accepted(name: str) -> None:
    assert is_repository_name(name)
    event = parse_event(with_detail(repository_name=name))
    assert isinstance(event, PushEvent) and event.repository == name


@given(st.binary(max_size=300))
def test_any_bytes_either_parse_or_raise_invalid_request(raw: bytes) -> None:
    with contextlib.suppress(InvalidRequest):
        parse_event(raw)


@given(
    st.from_regex(r"[a-z0-9]{1,10}([._-][a-z0-9]{1,10}){0,3}(/[a-z0-9]{1,10}){0,3}", fullmatch=True)
)
def test_names_built_from_the_ecr_grammar_are_valid(name: str) -> None:
    assert is_repository_name(name) == (len(name) >= 2)


def push(account: str = "123456789012", region: str = "us-west-2") -> PushEvent:
    return PushEvent("id", account, region, "app")


def test_scope_accepts_what_it_serves_and_names_what_it_does_not() -> None:
    assert Scope().mismatch(push()) is None
    assert Scope("123456789012", "us-west-2").mismatch(push()) is None
    assert "account 999999999999" in (Scope("123456789012").mismatch(push("999999999999")) or "")
    assert "region eu-west-1" in (
        Scope(region="us-west-2").mismatch(push(region="eu-west-1")) or ""
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"", PruneRequest()),
        (b"  \n", PruneRequest()),
        (b"{}", PruneRequest()),
        (b'{"dry_run": true, "wait": true}', PruneRequest(dry_run=True, wait=True)),
        (
            b'{"repositories": ["team/app", "b2", "team/app"]}',
            PruneRequest(repositories=("team/app", "b2")),
        ),
    ],
)
def test_prune_requests(raw: bytes, expected: PruneRequest) -> None:
    assert parse_prune_request(raw) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"repositories": []}', "omit it to prune every repository"),
        (b'{"repositories": null}', "must be a list"),
        (b'{"repositories": "app"}', "must be a list"),
        (body({"repositories": ["ok"] * 101}), "1 to 100"),
        (b'{"repositories": ["Bad"]}', "not valid repository names: 'Bad'"),
        (b'{"dry_run": "yes"}', "dry_run must be true or false"),
        (b'{"wait": 1}', "wait must be true or false"),
        (b'{"dryrun": true}', r"unknown field 'dryrun' \(allowed: dry_run, repositories, wait\)"),
        (body({f"k{n}": 1 for n in range(5000)}), r"unknown field 'k0' and 4999 more \(allowed"),
        (b"[]", "must be a JSON object"),
    ],
)
def test_bad_prune_requests(raw: bytes, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        parse_prune_request(raw)
