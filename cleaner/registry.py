"""The ECR adapter: aiobotocore calls in, model objects and RegistryError out.

Nothing above this module sees botocore. Every call goes through one retry loop
(throttling, 5xx, dropped connections), and deletions are judged per requested digest,
because ECR-compatible servers disagree on what they report (moto, for one, leaves deleted
untagged images out of `imageIds`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectionError,
    HTTPClientError,
    ReadTimeoutError,
)

from cleaner.errors import ConfigError, RegistryError, RepositoryNotFoundError
from cleaner.model import DeleteFailure, DeleteResult, Image, Repository
from cleaner.retry import Backoff, retrying

log = logging.getLogger(__name__)

PAGE_SIZE = 1000  # ECR's maximum for DescribeImages/DescribeRepositories
BATCH_LIMIT = 100  # ECR's maximum imageIds per BatchDeleteImage/BatchGetImage

# Codes botocore's own retry logic treats as throttling (botocore/retries/standard.py),
# plus the ones ECR and its proxies are seen to send.
THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "LimitExceededException",
        "SlowDown",
    }
)
ALL_MANIFEST_TYPES = [
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
]


def is_transient(error: BaseException) -> bool:
    """Throttling, server faults and dropped connections are worth another try."""
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return code in THROTTLING_CODES or status == 429 or status >= 500
    return isinstance(
        error, ConnectionError | ConnectionClosedError | HTTPClientError | ReadTimeoutError
    )


def _translate(error: Exception, operation: str) -> RegistryError:
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        message = error.response.get("Error", {}).get("Message", "") or str(error)
        cls = RepositoryNotFoundError if code == "RepositoryNotFoundException" else RegistryError
        return cls(f"{operation}: {code}: {message}", code=code, operation=operation)
    return RegistryError(f"{operation}: {error}", code=type(error).__name__, operation=operation)


def image_from_detail(detail: Mapping[str, Any]) -> Image:
    pulled = detail.get("lastRecordedPullTime")
    return Image(
        digest=detail["imageDigest"],
        tags=tuple(detail.get("imageTags") or ()),
        pushed_at=_utc(detail["imagePushedAt"]),
        size=int(detail.get("imageSizeInBytes") or 0),
        media_type=detail.get("imageManifestMediaType", ""),
        artifact_media_type=detail.get("artifactMediaType", ""),
        last_pulled_at=_utc(pulled) if pulled else None,
        subject=detail.get("subjectManifestDigest"),
    )


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


class EcrRegistry:
    """One ECR registry (account + region) reached through an aiobotocore client."""

    def __init__(self, client: Any, *, backoff: Backoff | None = None) -> None:
        self._client = client
        self._backoff = backoff or Backoff()

    @classmethod
    @asynccontextmanager
    async def connect(
        cls,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        max_connections: int = 10,
        backoff: Backoff | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
    ) -> AsyncIterator[EcrRegistry]:
        """Build a client from the standard AWS chain (env, profile, IRSA, AWS_ENDPOINT_URL_ECR)."""
        config = AioConfig(
            retries={"mode": "standard", "total_max_attempts": 1},  # see cleaner/retry.py
            max_pool_connections=max_connections,
            connect_timeout=10,
            read_timeout=60,
        )
        session = get_session()
        try:
            client_context = session.create_client(
                "ecr",
                region_name=region,
                endpoint_url=endpoint_url,
                config=config,
                aws_access_key_id=access_key,
                aws_secret_access_key=secret_key,
            )
            async with client_context as client:
                yield cls(client, backoff=backoff)
        except BotoCoreError as error:  # no region, bad profile, bad endpoint URL...
            raise ConfigError(f"cannot create the ECR client: {error}") from error

    async def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        method = getattr(self._client, _snake(operation))
        try:
            result: dict[str, Any] = await retrying(
                lambda: method(**params),
                retryable=is_transient,
                backoff=self._backoff,
                what=operation,
            )
        except (ClientError, BotoCoreError) as error:
            raise _translate(error, operation) from error
        return result

    async def list_repositories(self) -> list[Repository]:
        repos: list[Repository] = []
        params: dict[str, Any] = {"maxResults": PAGE_SIZE}
        while True:
            page = await self._call("DescribeRepositories", **params)
            repos.extend(
                Repository(r["repositoryName"], r.get("repositoryUri", ""), r.get("registryId", ""))
                for r in page.get("repositories", ())
            )
            if not page.get("nextToken"):
                return repos
            params["nextToken"] = page["nextToken"]

    async def list_images(self, repository: str) -> list[Image]:
        """Every ACTIVE image of the repository, in pages of 1000."""
        images: list[Image] = []
        params: dict[str, Any] = {"repositoryName": repository, "maxResults": PAGE_SIZE}
        while True:
            page = await self._call("DescribeImages", **params)
            images.extend(image_from_detail(d) for d in page.get("imageDetails", ()))
            if not page.get("nextToken"):
                return images
            params["nextToken"] = page["nextToken"]

    async def get_lifecycle_policy(self, repository: str) -> str | None:
        """The repository's own lifecycle policy text, or None when it has none."""
        try:
            result = await self._call("GetLifecyclePolicy", repositoryName=repository)
        except RegistryError as error:
            if error.code == "LifecyclePolicyNotFoundException":
                return None
            raise
        text = result.get("lifecyclePolicyText")
        return str(text) if text else None

    async def delete_images(self, repository: str, digests: Iterable[str]) -> DeleteResult:
        """Delete up to 100 digests in one call; the result covers each requested digest."""
        wanted = list(dict.fromkeys(digests))
        if not wanted:
            return DeleteResult()
        if len(wanted) > BATCH_LIMIT:
            raise ValueError(f"at most {BATCH_LIMIT} digests per call, got {len(wanted)}")
        response = await self._call(
            "BatchDeleteImage",
            repositoryName=repository,
            imageIds=[{"imageDigest": d} for d in wanted],
        )
        deleted = {i["imageDigest"] for i in response.get("imageIds", ()) if "imageDigest" in i}
        failed: dict[str, DeleteFailure] = {}
        for failure in response.get("failures", ()):
            digest = failure.get("imageId", {}).get("imageDigest", "")
            code = failure.get("failureCode", "")
            if code == "ImageNotFound":  # already gone: the state we wanted
                deleted.add(digest)
            elif digest in wanted:
                failed[digest] = DeleteFailure(digest, code, failure.get("failureReason", ""))
        unreported = [d for d in wanted if d not in deleted and d not in failed]
        if unreported:
            deleted |= await self._gone(repository, unreported)
        still_there = [d for d in unreported if d not in deleted]
        for digest in still_there:
            failed[digest] = DeleteFailure(digest, "NotDeleted", "the registry did not delete it")
        return DeleteResult(
            deleted=tuple(d for d in wanted if d in deleted),
            failed=tuple(failed[d] for d in wanted if d in failed),
        )

    async def _gone(self, repository: str, digests: list[str]) -> set[str]:
        """Which of these digests no longer exist (BatchGetImage reports per id)."""
        response = await self._call(
            "BatchGetImage",
            repositoryName=repository,
            imageIds=[{"imageDigest": d} for d in digests],
            acceptedMediaTypes=ALL_MANIFEST_TYPES,
        )
        present = {i["imageId"]["imageDigest"] for i in response.get("images", ())}
        return {d for d in digests if d not in present}


def _snake(operation: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in operation).lstrip("_")
