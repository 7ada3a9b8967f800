"""End to end: indexes, attestations, signatures and referrers follow their parent.

Each scenario is seeded on the emulator and on moto, then swept through the CLI; the sweep
must report no failures and leave exactly the expected images.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from cleaner.emulator import (
    Platform,
    attestation_descriptor,
    attestation_manifest,
    cosign_signature_manifest,
    cosign_tag,
    descriptor,
    index_manifest,
    make_manifest,
    referrer_manifest,
)
from tests.support.backends import Backend
from tests.support.cli import run_cli

NOW = datetime.now(UTC)
AMD64, ARM64 = Platform("amd64"), Platform("arm64")


def rule(priority: int, selection: dict[str, Any]) -> dict[str, Any]:
    return {"rulePriority": priority, "selection": selection, "action": {"type": "expire"}}


UNTAGGED_AFTER_A_DAY = rule(
    1,
    {
        "tagStatus": "untagged",
        "countType": "sinceImagePushed",
        "countUnit": "days",
        "countNumber": 1,
    },
)


async def sweep(backend: Backend, tmp_path: Path, rules: list[dict[str, Any]]) -> dict[str, Any]:
    policy = {"repositories": [{"match": "*", "rules": rules}], "protect": {"newer_than": "0s"}}
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    code, out = await run_cli(
        "sweep", "--policy", str(path), "--endpoint-url", backend.endpoint_url, "--output", "json"
    )
    (report,) = json.loads(out)["repositories"]
    assert code == 0 and report["failed"] == [] and report["error"] is None, report
    return report


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def platform_index(
    backend: Backend, name: str, seed: str, days: float, *, oci: bool, tag: str
) -> dict[str, str]:
    """An index with amd64 and arm64 manifests and a buildx attestation, all `days` old."""
    amd, arm = make_manifest(f"{seed}-amd", oci=oci), make_manifest(f"{seed}-arm", oci=oci)
    digests = {
        f"{name}-amd": backend.push_manifest("app", amd, pushed_at=ago(days)),
        f"{name}-arm": backend.push_manifest("app", arm, pushed_at=ago(days)),
    }
    att = attestation_manifest(digests[f"{name}-amd"], seed=seed)
    digests[f"{name}-att"] = backend.push_manifest("app", att, pushed_at=ago(days))
    entries = [descriptor(amd, platform=AMD64), descriptor(arm, platform=ARM64)]
    entries.append(attestation_descriptor(att, digests[f"{name}-amd"]))
    digests[name] = backend.push_manifest(
        "app", index_manifest(entries, oci=oci), tag=tag, pushed_at=ago(days)
    )
    return digests


def names(report: dict[str, Any], key: str, digests: dict[str, str]) -> set[str]:
    by_digest = {d: n for n, d in digests.items()}
    items = report[key] if key == "deleted" else [i["digest"] for i in report[key]]
    return {by_digest[d] for d in items}


async def test_an_untagged_rule_never_removes_children_of_kept_indexes(
    backend: Backend, tmp_path: Path
) -> None:
    backend.create_repository("app")
    digests = platform_index(backend, "oci", "o", 10, oci=True, tag="v2")
    digests |= platform_index(backend, "docker", "d", 10, oci=False, tag="v1")
    digests["leftover"] = backend.push_manifest("app", make_manifest("leftover"), pushed_at=ago(10))
    report = await sweep(backend, tmp_path, [UNTAGGED_AFTER_A_DAY])
    assert names(report, "deleted", digests) == {"leftover"}
    assert backend.digests("app") == set(digests.values()) - {digests["leftover"]}
    reasons = {i["digest"]: i["reason"] for i in report["keep"]}
    assert reasons[digests["oci-amd"]].startswith("kept: child of sha256:")
    assert "(v2, kept)" in reasons[digests["oci-amd"]]
    assert reasons[digests["docker-att"]].startswith("kept: attestation of")


async def test_an_expired_index_takes_its_children_but_not_a_shared_one(
    backend: Backend, tmp_path: Path
) -> None:
    backend.create_repository("app")
    shared, old_only, new_only = (
        make_manifest("shared"),
        make_manifest("old-only"),
        make_manifest("new-only"),
    )
    digests = {
        name: backend.push_manifest("app", text, pushed_at=ago(days))
        for name, text, days in [
            ("shared", shared, 20),
            ("old-only", old_only, 20),
            ("new-only", new_only, 1),
        ]
    }
    old_index = index_manifest(
        [descriptor(shared, platform=AMD64), descriptor(old_only, platform=ARM64)]
    )
    new_index = index_manifest(
        [descriptor(shared, platform=AMD64), descriptor(new_only, platform=ARM64)]
    )
    digests["old"] = backend.push_manifest("app", old_index, tag="v1", pushed_at=ago(20))
    digests["new"] = backend.push_manifest("app", new_index, tag="v2", pushed_at=ago(1))
    keep_1 = rule(1, {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 1})
    report = await sweep(backend, tmp_path, [keep_1])
    assert names(report, "deleted", digests) == {"old", "old-only"}
    assert {n for n, d in digests.items() if d in backend.digests("app")} == {
        "new",
        "shared",
        "new-only",
    }


async def test_keep_2_with_cosign_signatures_keeps_two_images_and_their_signatures(
    backend: Backend, tmp_path: Path
) -> None:
    backend.create_repository("app")
    digests: dict[str, str] = {}
    for n in range(1, 5):  # build-1 is the oldest; every signature is newer than its image
        image = backend.push_manifest(
            "app", make_manifest(f"img{n}"), tag=f"build-{n}", pushed_at=ago(5 - n)
        )
        digests[f"img{n}"] = image
        for suffix in ("sig", "att"):
            artifact = cosign_signature_manifest(image, seed=f"{n}{suffix}")
            digests[f"{suffix}{n}"] = backend.push_manifest(
                "app", artifact, tag=cosign_tag(image, suffix), pushed_at=ago(5 - n - 0.1)
            )
    keep_2 = rule(1, {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 2})
    report = await sweep(backend, tmp_path, [keep_2])
    assert names(report, "deleted", digests) == {"img1", "sig1", "att1", "img2", "sig2", "att2"}
    assert names(report, "keep", digests) == {"img3", "sig3", "att3", "img4", "sig4", "att4"}
    reasons = {i["digest"]: i["reason"] for i in report["keep"]}
    assert reasons[digests["sig4"]].startswith("kept: signature of")


async def test_an_sbom_follows_its_subject(backend: Backend, tmp_path: Path) -> None:
    backend.create_repository("app")
    kept, expired = make_manifest("kept", oci=True), make_manifest("expired", oci=True)
    digests = {
        "kept": backend.push_manifest("app", kept, tag="v1", pushed_at=ago(5)),
        "expired": backend.push_manifest("app", expired, pushed_at=ago(5)),
        "kept-sbom": backend.push_manifest(
            "app", referrer_manifest(kept, seed=1), pushed_at=ago(5)
        ),
        "expired-sbom": backend.push_manifest(
            "app", referrer_manifest(expired, seed=2), pushed_at=ago(5)
        ),
    }
    report = await sweep(backend, tmp_path, [UNTAGGED_AFTER_A_DAY])
    assert names(report, "deleted", digests) == {"expired", "expired-sbom"}
    assert backend.digests("app") == {digests["kept"], digests["kept-sbom"]}
