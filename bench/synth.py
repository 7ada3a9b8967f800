"""Synthetic CI repositories for the benchmarks, deterministic from (template, size, now).

A repository is a history of pushes, oldest first, over 90 days: plain CI builds (some
untagged leftovers of moving tags), cosign-signed builds, buildx multi-arch pushes (an OCI
index over two platform manifests and their provenance attestations) and releases. Content
depends on the template number, not the repository name, so a baseline repository seeded
from the same template holds the very same images (and digests) as its sweep twin.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from cleaner.emulator import manifests as mf
from cleaner.emulator.store import RegistryStore

HISTORY = timedelta(days=90)
SWEEP_RULES = [
    {
        "rulePriority": 1,
        "description": "keep 20 releases",
        "selection": {
            "tagStatus": "tagged",
            "tagPrefixList": ["release-"],
            "countType": "imageCountMoreThan",
            "countNumber": 20,
        },
        "action": {"type": "expire"},
    },
    {
        "rulePriority": 2,
        "description": "untagged go after a week",
        "selection": {
            "tagStatus": "untagged",
            "countType": "sinceImagePushed",
            "countUnit": "days",
            "countNumber": 7,
        },
        "action": {"type": "expire"},
    },
    {
        "rulePriority": 3,
        "description": "keep the 100 newest of the rest",
        "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 100},
        "action": {"type": "expire"},
    },
]
# No cluster in a benchmark: in-use protection off, whatever kubeconfig the machine has.
PROTECT = {"tags": ["prod"], "semver": {"keep": 3, "per": "none"}, "in_use": False}


def policy_doc(pattern: str) -> dict[str, object]:
    """The extended policy file the sweep and the planner benchmark apply."""
    return {"repositories": [{"match": pattern, "rules": SWEEP_RULES}], "protect": PROTECT}


@dataclass(frozen=True, slots=True)
class Push:
    """One stored image: manifest text, push time, tags."""

    manifest: str
    pushed_at: datetime
    tags: tuple[str, ...] = ()


def pushes(template: int, images: int, now: datetime) -> Iterator[Push]:
    """About `images` images (never more) for one repository, oldest first."""
    rng = random.Random(template)
    made = build = 0
    while made < images:
        build += 1
        when = now - HISTORY * (1 - made / images)
        kind = rng.random()
        if kind < 0.15 and images - made >= 5:
            group = list(_multi_arch(template, build, when, rng))
        elif kind < 0.25 and images - made >= 2:
            group = list(_signed(template, build, when))
        else:
            group = [_plain(template, build, when, rng)]
        made += len(group)
        yield from group


def _plain(template: int, build: int, when: datetime, rng: random.Random) -> Push:
    text = mf.make_manifest(f"t{template}:{build}", layers=(29_150_000, 1_000_000 + build))
    roll = rng.random()
    if roll < 0.05:
        tags: tuple[str, ...] = (f"release-{build}", f"v1.{build // 100}.{build % 100}")
    elif roll < 0.65:
        tags = (f"main-{build}",)
    else:
        tags = ()  # the leftover of a moving tag (`latest`, `staging`)
    return Push(text, when, tags)


def _signed(template: int, build: int, when: datetime) -> Iterator[Push]:
    text = mf.make_manifest(f"t{template}:{build}", oci=True, layers=(29_150_000, build))
    yield Push(text, when, (f"main-{build}",))
    signature = mf.cosign_signature_manifest(mf.digest_of(text))
    yield Push(signature, when + timedelta(seconds=30), (mf.cosign_tag(mf.digest_of(text)),))


def _multi_arch(template: int, build: int, when: datetime, rng: random.Random) -> Iterator[Push]:
    entries = []
    for arch in ("amd64", "arm64"):
        text = mf.make_manifest(f"t{template}:{build}:{arch}", oci=True, layers=(29_150_000, build))
        attestation = mf.attestation_manifest(mf.digest_of(text))
        yield Push(text, when)
        yield Push(attestation, when)
        entries += [
            mf.descriptor(text, platform=mf.Platform(arch)),
            mf.attestation_descriptor(attestation, mf.digest_of(text)),
        ]
    tags = (f"release-{build}",) if rng.random() < 0.3 else (f"main-{build}",)
    index = mf.index_manifest(entries, oci=True)
    yield Push(index, when + timedelta(seconds=5), tags)


def seed_repository(
    store: RegistryStore, name: str, template: int, images: int, now: datetime
) -> int:
    """Create `name` and push the template's history into it; returns the image count."""
    store.create_repository(name, created_at=now - HISTORY - timedelta(days=1))
    count = 0
    for push in pushes(template, images, now):
        digest = store.put_image(
            name, push.manifest, tag=push.tags[0] if push.tags else None, pushed_at=push.pushed_at
        )
        for tag in push.tags[1:]:
            store.add_tag(name, digest, tag)
        count += 1
    return count
