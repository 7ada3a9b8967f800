"""Two ECR servers behind one seeding interface: our emulator and moto's (written by others).

The cleaner under test always talks to them over HTTP with the real aiobotocore client.
Seeding is test setup, so it takes the fast path each server offers: the emulator's store
API, and for moto a boto3 push followed by setting the push time on moto's in-memory model
(moto has no API for back-dating an image).
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any, Protocol

ACCOUNT = "123456789012"
REGION = "us-east-1"


def manifest(seed: str, size: int = 1000) -> str:
    """A distinct, valid single-platform docker v2 manifest; `seed` makes it unique."""
    layer = hashlib.sha256(seed.encode()).hexdigest()
    config = hashlib.sha256(("config" + seed).encode()).hexdigest()
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "size": 100,
                "digest": f"sha256:{config}",
            },
            "layers": [
                {
                    "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "size": size,
                    "digest": f"sha256:{layer}",
                }
            ],
        },
        separators=(",", ":"),
    )


class Backend(Protocol):
    name: str
    endpoint_url: str

    def create_repository(self, name: str) -> None: ...

    def push(self, repository: str, tags: list[str], pushed_at: datetime, seed: str) -> str: ...

    def push_manifest(
        self, repository: str, text: str, tag: str | None = None, pushed_at: datetime | None = None
    ) -> str: ...

    def digests(self, repository: str) -> set[str]: ...

    def tags(self, repository: str) -> dict[str, str]: ...

    def set_lifecycle_policy(self, repository: str, text: str) -> None: ...


class EmulatorBackend:
    name = "emulator"

    def __init__(self, store: Any, endpoint_url: str) -> None:
        self.store = store
        self.endpoint_url = endpoint_url

    def create_repository(self, name: str) -> None:
        self.store.create_repository(name)

    def push(self, repository: str, tags: list[str], pushed_at: datetime, seed: str) -> str:
        text = manifest(seed)
        first = tags[0] if tags else None
        digest: str = self.store.put_image(repository, text, tag=first, pushed_at=pushed_at)
        for tag in tags[1:]:
            self.store.put_image(repository, text, tag=tag, pushed_at=pushed_at)
        return digest

    def push_manifest(
        self, repository: str, text: str, tag: str | None = None, pushed_at: datetime | None = None
    ) -> str:
        media_type = json.loads(text)["mediaType"]
        return str(
            self.store.put_image(
                repository, str(text), media_type=media_type, tag=tag, pushed_at=pushed_at
            )
        )

    def digests(self, repository: str) -> set[str]:
        return set(self.store.digests(repository))

    def tags(self, repository: str) -> dict[str, str]:
        return dict(self.store.tags(repository))

    def set_lifecycle_policy(self, repository: str, text: str) -> None:
        self.store.repository(repository).policy = text


class MotoBackend:
    name = "moto"

    def __init__(
        self, endpoint_url: str, region: str = REGION, role_arn: str | None = None
    ) -> None:
        """The caller's account in `region`, or with `role_arn` the account moto puts that
        role's resources in (the account of its ARN)."""
        import boto3

        self.endpoint_url, self.region, self.account = endpoint_url, region, ACCOUNT
        keys = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        if role_arn is not None:
            sts = boto3.client("sts", region_name=region, endpoint_url=endpoint_url, **keys)
            granted = sts.assume_role(RoleArn=role_arn, RoleSessionName="seed")["Credentials"]
            keys = {
                "aws_access_key_id": granted["AccessKeyId"],
                "aws_secret_access_key": granted["SecretAccessKey"],
                "aws_session_token": granted["SessionToken"],
            }
            self.account = role_arn.split(":")[4]
        self.keys = keys
        self.client = boto3.client("ecr", region_name=region, endpoint_url=endpoint_url, **keys)

    def create_repository(self, name: str) -> None:
        self.client.create_repository(repositoryName=name)

    def push(self, repository: str, tags: list[str], pushed_at: datetime, seed: str) -> str:
        text = manifest(seed)
        for tag in tags or [None]:
            args: dict[str, Any] = {"repositoryName": repository, "imageManifest": text}
            if tag is not None:
                args["imageTag"] = tag
            digest: str = self.client.put_image(**args)["image"]["imageId"]["imageDigest"]
        self._backdate(repository, digest, pushed_at)
        return digest

    def push_manifest(
        self, repository: str, text: str, tag: str | None = None, pushed_at: datetime | None = None
    ) -> str:
        """Raw manifest text with its own media type and its real digest (moto would hash the
        layer digests, or pick a random digest for an index, unless told)."""
        text = str(text)
        digest = "sha256:" + hashlib.sha256(text.encode()).hexdigest()
        args: dict[str, Any] = {
            "repositoryName": repository,
            "imageManifest": text,
            "imageManifestMediaType": json.loads(text)["mediaType"],
            "imageDigest": digest,
        }
        if tag:
            args["imageTag"] = tag
        self.client.put_image(**args)
        if pushed_at is not None:
            self._backdate(repository, digest, pushed_at)
        return digest

    def _backdate(self, repository: str, digest: str, pushed_at: datetime) -> None:
        from moto.ecr.models import ecr_backends

        repo = ecr_backends[self.account][self.region].repositories[repository]
        for image in repo.images:
            if image.image_digest == digest:
                image.image_pushed_at = pushed_at.timestamp()

    def set_lifecycle_policy(self, repository: str, text: str) -> None:
        self.client.put_lifecycle_policy(repositoryName=repository, lifecyclePolicyText=text)

    def _describe(self, repository: str) -> list[dict[str, Any]]:
        pages = self.client.get_paginator("describe_images").paginate(repositoryName=repository)
        return [d for page in pages for d in page["imageDetails"]]

    def digests(self, repository: str) -> set[str]:
        return {d["imageDigest"] for d in self._describe(repository)}

    def tags(self, repository: str) -> dict[str, str]:
        return {
            t: d["imageDigest"] for d in self._describe(repository) for t in d.get("imageTags", ())
        }
