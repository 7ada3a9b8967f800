"""The ECR adapter: aiobotocore calls in, model objects and RegistryError out.

Nothing above this module sees botocore. Every call goes through one retry loop
(throttling, 5xx, dropped connections), and deletions are judged per requested digest,
because ECR-compatible servers disagree on what they report (moto, for one, leaves deleted
untagged images out of `imageIds`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
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
from botocore.utils import parse_timestamp as botocore_parse_timestamp

from cleaner.clients.ratelimit import AdaptiveLimiter, Limiter
from cleaner.clients.retry import Backoff, retrying
from cleaner.errors import ConfigError, RegistryError, RepositoryNotFoundError
from cleaner.planning.model import BATCH_LIMIT, DeleteFailure, DeleteResult, Image, Repository

log = logging.getLogger(__name__)

CallHook = Callable[[str, str], None]
PAGE_SIZE = 1000  # ECR's maximum for DescribeImages/DescribeRepositories

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
REFERRERS_PAGE_SIZE = 50  # ECR's maximum for ListImageReferrers
# Answers meaning "this endpoint does not implement the operation". AWS JSON services answer
# UnknownOperationException; LocalStack answers 501; moto's server crashes with an HTML 500
# page that carries no AWS error code at all (botocore then uses the status as the code).
UNSUPPORTED_CODES = frozenset(
    {
        "UnknownOperationException",
        "InvalidAction",
        "NotImplemented",
        "NotImplementedException",
        "UnsupportedOperation",
        "UnsupportedOperationException",
    }
)


def is_transient(error: BaseException) -> bool:
    """Throttling, server faults and dropped connections are worth another try."""
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return code in THROTTLING_CODES or status == 429 or status >= 500
    return isinstance(
        error, ConnectionError | ConnectionClosedError | HTTPClientError | ReadTimeoutError
    )


def outcome_of(error: BaseException) -> str:
    """How a failed attempt is counted: throttled, or any other error."""
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code in THROTTLING_CODES or status == 429:
            return "throttled"
    return "error"


def _ignore_call(operation: str, outcome: str) -> None:
    pass


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


def parse_timestamp(value: object) -> datetime:
    """Epoch seconds (what ECR sends) fast, anything else the way botocore would."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    try:
        return datetime.fromtimestamp(float(str(value)), UTC)
    except ValueError:
        return _utc(botocore_parse_timestamp(value))


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


class EcrRegistry:
    """One ECR registry (account + region) reached through an aiobotocore client."""

    def __init__(
        self,
        client: Any,
        *,
        backoff: Backoff | None = None,
        on_call: CallHook | None = None,
        limiter: Limiter | None = None,
    ) -> None:
        self._client = client
        self._backoff = backoff or Backoff()
        self._on_call = on_call or _ignore_call
        # On by default: free until the first throttle (cleaner/ratelimit.py).
        self._limiter = limiter if limiter is not None else AdaptiveLimiter()

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
        on_call: CallHook | None = None,
        limiter: Limiter | None = None,
    ) -> AsyncIterator[EcrRegistry]:
        """Build a client from the standard AWS chain (env, profile, IRSA, AWS_ENDPOINT_URL_ECR).

        `on_call(operation, outcome)` hears every attempt: outcome ok, throttled or error.
        """
        config = AioConfig(
            retries={"mode": "standard", "total_max_attempts": 1},  # see cleaner/retry.py
            max_pool_connections=max_connections,
            connect_timeout=10,
            read_timeout=60,
        )
        session = get_session()
        # botocore turns every timestamp into a dateutil tz object; ECR's JSON sends epoch
        # seconds, and a sweep parses two per image (listing and re-verification). The
        # factory's documented hook swaps in a parser that is several times cheaper.
        factory = session.get_component("response_parser_factory")
        factory.set_parser_defaults(timestamp_parser=parse_timestamp)
        client_context = session.create_client(
            "ecr",
            region_name=region,
            endpoint_url=endpoint_url,
            config=config,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
        )
        async with AsyncExitStack() as stack:
            try:
                client = await stack.enter_async_context(client_context)
            except BotoCoreError as error:  # no region, bad profile, bad endpoint URL...
                raise ConfigError(f"cannot create the ECR client: {error}") from error
            yield cls(client, backoff=backoff, on_call=on_call, limiter=limiter)

    async def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        method = getattr(self._client, _snake(operation))

        async def attempt() -> dict[str, Any]:
            asked_at = await self._limiter.acquire(operation)
            try:
                result: dict[str, Any] = await method(**params)
            except Exception as error:
                outcome = outcome_of(error)
                self._limiter.report(operation, outcome, asked_at)
                self._on_call(operation, outcome)
                raise
            self._limiter.report(operation, "ok", asked_at)
            self._on_call(operation, "ok")
            return result

        try:
            return await retrying(
                attempt, retryable=is_transient, backoff=self._backoff, what=operation
            )
        except (ClientError, BotoCoreError) as error:
            raise _translate(error, operation) from error

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

    async def describe_images(self, repository: str, digests: Iterable[str]) -> dict[str, Image]:
        """The current state of up to 100 digests; absent ones are gone.

        DescribeImages by id fails the whole call when one id is missing, so on
        ImageNotFoundException the survivors are found per id first (BatchGetImage) and only
        they are described.
        """
        wanted = list(dict.fromkeys(digests))
        if len(wanted) > BATCH_LIMIT:
            raise ValueError(f"at most {BATCH_LIMIT} digests per call, got {len(wanted)}")
        if not wanted:
            return {}
        try:
            return await self._describe_ids(repository, wanted)
        except RegistryError as error:
            if error.code != "ImageNotFoundException":
                raise
        present = [d for d in wanted if d not in await self._gone(repository, wanted)]
        return await self._describe_ids(repository, present) if present else {}

    async def _describe_ids(self, repository: str, digests: list[str]) -> dict[str, Image]:
        response = await self._call(
            "DescribeImages",
            repositoryName=repository,
            imageIds=[{"imageDigest": d} for d in digests],
        )
        images = (image_from_detail(d) for d in response.get("imageDetails", ()))
        return {image.digest: image for image in images}

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
        present = await self.get_manifests(repository, digests)
        return {d for d in digests if d not in present}

    async def get_manifests(self, repository: str, digests: Iterable[str]) -> dict[str, str]:
        """Manifest text by digest (indexes included), 100 per BatchGetImage call.

        Digests the registry does not return (gone, or unreadable) are absent from the result.
        """
        wanted = list(dict.fromkeys(digests))
        manifests: dict[str, str] = {}
        for start in range(0, len(wanted), BATCH_LIMIT):
            chunk = wanted[start : start + BATCH_LIMIT]
            response = await self._call(
                "BatchGetImage",
                repositoryName=repository,
                imageIds=[{"imageDigest": d} for d in chunk],
                acceptedMediaTypes=ALL_MANIFEST_TYPES,
            )
            for image in response.get("images", ()):
                digest = image.get("imageId", {}).get("imageDigest")
                if digest in chunk and "imageManifest" in image:
                    manifests[digest] = image["imageManifest"]
        return manifests

    async def list_referrers(self, repository: str, digest: str) -> list[str] | None:
        """Digests of the OCI referrers of `digest` (ListImageReferrers, every page).

        None when the endpoint does not implement the operation (moto, older ECR-compatible
        servers): callers degrade to the other sources of referrer links.
        """
        params: dict[str, Any] = {
            "repositoryName": repository,
            "subjectId": {"imageDigest": digest},
            "maxResults": REFERRERS_PAGE_SIZE,
        }
        found: list[str] = []
        while True:
            try:
                page = await self._call_optional("ListImageReferrers", **params)
            except RegistryError as error:
                if error.code == "ImageNotFoundException":  # subject gone: nothing refers to it
                    return []
                raise
            if page is None:
                return None
            found.extend(r["digest"] for r in page.get("referrers", ()) if "digest" in r)
            if not page.get("nextToken"):
                return found
            params["nextToken"] = page["nextToken"]

    async def _call_optional(self, operation: str, **params: Any) -> dict[str, Any] | None:
        """`_call` for an operation the endpoint may lack: None then, and no retries for it."""
        method = getattr(self._client, _snake(operation), None)
        if method is None:  # a botocore too old to know the operation
            return None
        try:
            result: dict[str, Any] = await retrying(
                lambda: method(**params),
                retryable=lambda e: is_transient(e) and not self.is_unsupported(e),
                backoff=self._backoff,
                what=operation,
            )
        except ClientError as error:
            if self.is_unsupported(error):
                log.debug("%s is not supported by this endpoint: %s", operation, error)
                return None
            raise _translate(error, operation) from error
        except BotoCoreError as error:
            raise _translate(error, operation) from error
        return result

    @staticmethod
    def is_unsupported(error: BaseException) -> bool:
        """Did the endpoint answer that it does not implement the operation?"""
        if not isinstance(error, ClientError):
            return False
        code = str(error.response.get("Error", {}).get("Code", ""))
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        no_aws_code = code == str(status)  # a bare HTTP error page, not an AWS error shape
        return code in UNSUPPORTED_CODES or status == 501 or (no_aws_code and status in (404, 500))


def _snake(operation: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in operation).lstrip("_")
