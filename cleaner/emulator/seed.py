"""Named starting states for the emulator (`ecr-cleaner emulator --seed NAME`).

`demo` looks like a few weeks of CI in a small company: per-commit tags, PR builds,
releases, `latest` moving forward, untagged leftovers, one multi-arch index with buildx
attestations, cosign signatures and an OCI SBOM referrer. It is a pure function of `now`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cleaner.emulator import manifests as mf
from cleaner.emulator.store import RegistryStore

SEEDS = ("demo", "none")


def seed_names() -> list[str]:
    return list(SEEDS)


def seed_store(store: RegistryStore, name: str, now: datetime) -> None:
    if name == "demo":
        seed_demo(store, now)
    elif name != "none":
        raise ValueError(f"unknown seed {name!r}; choose one of {', '.join(SEEDS)}")


def seed_demo(store: RegistryStore, now: datetime) -> None:
    rng = random.Random(1596)  # fixed: the same `now` always gives the same registry
    _service(store, rng, now, "shop/api", days=56, builds=(1, 4), side_tag="staging", line="1.4")
    _service(
        store,
        rng,
        now,
        "shop/web",
        days=42,
        builds=(1, 2),
        side_tag="nightly",
        line="2.0",
        sign=True,
    )
    _base_images(store, rng, now)
    _ci_runner(store, rng, now)


@dataclass
class _Repo:
    """Pushes distinct images into one repository, remembering each manifest's text."""

    store: RegistryStore
    name: str
    rng: random.Random
    layers: Sequence[int]
    texts: dict[str, str] = field(default_factory=dict)

    def push(self, when: datetime, *tags: str, oci: bool = False) -> str:
        app_layer = self.rng.randint(800_000, 9_000_000)
        text = mf.make_manifest(
            f"{self.name}:{len(self.texts)}", oci=oci, layers=(*self.layers, app_layer)
        )
        return self.put(text, when, *tags)

    def put(self, text: str, when: datetime, *tags: str) -> str:
        digest = self.store.put_image(
            self.name, text, tag=tags[0] if tags else None, pushed_at=when
        )
        for tag in tags[1:]:
            self.store.add_tag(self.name, digest, tag)
        self.texts[digest] = text
        return digest


def _sha(rng: random.Random) -> str:
    return f"{rng.getrandbits(28):07x}"


def _times(rng: random.Random, day: datetime, count: int) -> list[datetime]:
    """`count` push times in working hours of `day`, oldest first."""
    return sorted(day + timedelta(minutes=rng.randint(8 * 60, 19 * 60)) for _ in range(count))


def _service(
    store: RegistryStore,
    rng: random.Random,
    now: datetime,
    name: str,
    *,
    days: int,
    builds: tuple[int, int],
    side_tag: str,
    line: str,
    sign: bool = False,
) -> None:
    store.create_repository(name, created_at=now - timedelta(days=days + 30))
    repo = _Repo(store, name, rng, layers=(29_150_000, rng.randint(20, 60) * 1_000_000))
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    patch, pr = 0, 100
    for age in range(days, 0, -1):
        day = midnight - timedelta(days=age)
        if day.weekday() >= 5:
            continue
        if rng.random() < 0.6:
            pr += rng.randint(1, 3)
            when = day + timedelta(minutes=rng.randint(6 * 60, 8 * 60))
            repo.push(when, f"pr-{pr}-{_sha(rng)}")
        newest = ""
        for when in _times(rng, day, rng.randint(*builds)):
            newest = repo.push(when, f"main-{_sha(rng)}", "latest")
        # A moving tag on a fresh build each time leaves yesterday's build untagged.
        repo.push(day + timedelta(hours=20), side_tag)
        if age % 10 == 0 and newest:
            patch += 1
            store.add_tag(name, newest, f"v{line}.{patch}")
            store.record_pull(name, newest, now - timedelta(days=rng.randint(0, 3)))
            if sign:
                _sign(repo, newest, day + timedelta(hours=21))
    if sign:
        latest = store.tags(name)["latest"]
        _sign(repo, latest, now - timedelta(hours=2), seed=1)
        _sign(repo, latest, now - timedelta(hours=1), seed=2)  # re-sign: old .sig untagged


def _sign(repo: _Repo, subject: str, when: datetime, *, seed: int = 0) -> None:
    repo.put(mf.cosign_signature_manifest(subject, seed=seed), when, mf.cosign_tag(subject))


def _base_images(store: RegistryStore, rng: random.Random, now: datetime) -> None:
    store.create_repository("platform/base", created_at=now - timedelta(days=400))
    repo = _Repo(store, "platform/base", rng, layers=(29_150_000, 14_000_000))
    for week in range(16, 10, -1):  # before the team moved to buildx: one platform
        when = now - timedelta(weeks=week)
        repo.push(when, f"bookworm-{when:%Y%m%d}", "latest")
    for week in range(10, 0, -1):  # weekly multi-arch rebuilds since
        when = now - timedelta(weeks=week)
        _multi_arch(repo, when, f"bookworm-{when:%Y%m%d}")
    _multi_arch(repo, now - timedelta(days=3), f"bookworm-{now - timedelta(days=3):%Y%m%d}")


def _multi_arch(repo: _Repo, when: datetime, tag: str) -> None:
    """A buildx push: platform manifests and provenance attestations, then the OCI index."""
    entries = []
    for arch in ("amd64", "arm64"):
        text = mf.make_manifest(
            f"{repo.name}:{tag}:{arch}",
            oci=True,
            layers=(29_150_000, repo.rng.randint(10, 20) * 1_000_000),
        )
        digest = repo.put(text, when)
        attestation = mf.attestation_manifest(digest)
        repo.put(attestation, when)
        entries += [
            mf.descriptor(text, platform=mf.Platform(arch)),
            mf.attestation_descriptor(attestation, digest),
        ]
    repo.put(mf.index_manifest(entries, oci=True), when + timedelta(seconds=5), tag, "latest")


def _ci_runner(store: RegistryStore, rng: random.Random, now: datetime) -> None:
    store.create_repository("tools/ci-runner", created_at=now - timedelta(days=200))
    repo = _Repo(store, "tools/ci-runner", rng, layers=(55_000_000, 120_000_000))
    digest = ""
    for i, age in enumerate(range(60, 0, -6)):
        digest = repo.push(
            now - timedelta(days=age, hours=rng.randint(0, 8)), f"v0.{i}.0", "latest", oci=True
        )
    store.record_pull("tools/ci-runner", digest, now - timedelta(hours=6))
    sbom = mf.referrer_manifest(repo.texts[digest], artifact_type=mf.SPDX)
    repo.put(sbom, now - timedelta(days=6, minutes=-10))
    _sign(repo, digest, now - timedelta(days=6, minutes=-12))
