"""The Amazon ECR adapter of the `Registry` port: one registry (account + region).

Every call goes through `cleaner.clients.aws.AwsApi` (paced, counted, retried), and
deletions are judged per requested digest, because ECR-compatible servers disagree on what
they report (moto, for one, leaves deleted untagged images out of `imageIds`).
`Image.pushed_at` is ECR's `imagePushedAt`.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from cleaner.clients.aws import AwsApi, CallHook, as_utc, open_client
from cleaner.clients.ratelimit import Limiter
from cleaner.clients.retry import Backoff
from cleaner.clients.roles import AssumedRole
from cleaner.errors import RegistryError, RepositoryNotFoundError
from cleaner.planning.lifecycle import parse_policy_text
from cleaner.planning.model import (
    DeleteFailure,
    DeleteResult,
    FailureKind,
    Image,
    LifecyclePolicy,
    Repository,
)
from cleaner.planning.references import ImageRef, parse_reference

BATCH_LIMIT = 100
"""ECR's most image ids per BatchDeleteImage, BatchGetImage or DescribeImages call."""
PAGE_SIZE = 1000  # ECR's maximum for DescribeImages/DescribeRepositories
REFERRERS_PAGE_SIZE = 50  # ECR's maximum for ListImageReferrers
REFERENCED_BY_INDEX = "ImageReferencedByManifestList"
ALL_MANIFEST_TYPES = [
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
]
# Every endpoint of one ECR registry: standard, FIPS, dualstack (`dkr-ecr...on.aws`), China.
_ECR_HOST = re.compile(
    r"(?P<account>[0-9]{12})\.dkr[.-]ecr(?:-fips)?\.(?P<region>[a-z0-9-]+)"
    r"\.(?:amazonaws\.com(?:\.cn)?|on\.aws)(?::443)?"
)


def registry_key(host: str) -> str:
    """One key for every endpoint of one registry, so a pod pulling through the FIPS or
    dualstack endpoint still protects the image of the repository DescribeRepositories lists."""
    match = _ECR_HOST.fullmatch(host.lower())
    return f"ecr:{match['account']}:{match['region']}" if match else host.lower()


def ecr_matches(ref: ImageRef, repository: Repository) -> bool:
    """`Registry.matches` for ECR: the same registry (any endpoint) and the same path."""
    own = parse_reference(repository.uri) if repository.uri else None
    if own is None:
        # No URI to compare: the name on any ECR endpoint of the same account. Over-matching
        # only keeps more; under-matching would delete a running image.
        key = registry_key(ref.host).split(":")
        same_account = key[0] == "ecr" and repository.registry_id in ("", key[1])
        return same_account and ref.path == repository.name
    return ref.path == own.path and registry_key(ref.host) == registry_key(own.host)


def image_from_detail(detail: Mapping[str, Any]) -> Image:
    pulled = detail.get("lastRecordedPullTime")
    return Image(
        digest=detail["imageDigest"],
        tags=tuple(detail.get("imageTags") or ()),
        pushed_at=as_utc(detail["imagePushedAt"]),
        size=int(detail.get("imageSizeInBytes") or 0),
        media_type=detail.get("imageManifestMediaType", ""),
        artifact_media_type=detail.get("artifactMediaType", ""),
        last_pulled_at=as_utc(pulled) if pulled else None,
        subject=detail.get("subjectManifestDigest"),
    )


def _repository(detail: Mapping[str, Any]) -> Repository:
    return Repository(
        detail["repositoryName"], detail.get("repositoryUri", ""), detail.get("registryId", "")
    )


def _ids(digests: Sequence[str]) -> list[dict[str, str]]:
    return [{"imageDigest": d} for d in digests]


def _at_most_a_batch(digests: Sequence[str]) -> list[str]:
    wanted = list(dict.fromkeys(digests))
    if len(wanted) > BATCH_LIMIT:
        raise ValueError(f"at most {BATCH_LIMIT} digests per call, got {len(wanted)}")
    return wanted


class EcrRegistry:
    """One ECR registry reached through an aiobotocore client (see `connect`)."""

    batch_limit = BATCH_LIMIT

    def __init__(
        self,
        client: Any,
        *,
        backoff: Backoff | None = None,
        on_call: CallHook | None = None,
        limiter: Limiter | None = None,
    ) -> None:
        self._registry: tuple[str, str] | None = None
        """(URI host, registry id), learned from the first repository described."""
        self._learning = asyncio.Lock()
        self._api = AwsApi(
            client,
            error=RegistryError,
            errors_by_code={"RepositoryNotFoundException": RepositoryNotFoundError},
            backoff=backoff,
            on_call=on_call,
            limiter=limiter,
        )

    @classmethod
    @asynccontextmanager
    async def connect(
        cls,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        max_connections: int = 10,
        access_key: str | None = None,
        secret_key: str | None = None,
        role: AssumedRole | None = None,
        backoff: Backoff | None = None,
        on_call: CallHook | None = None,
        limiter: Limiter | None = None,
    ) -> AsyncIterator[EcrRegistry]:
        """From the standard AWS chain (env, profile, IRSA, AWS_ENDPOINT_URL_ECR), or as
        `role`, whose account's registry it then is.

        `on_call(operation, outcome)` hears every attempt: outcome ok, throttled or error.
        """
        async with open_client(
            "ecr",
            region=region,
            endpoint_url=endpoint_url,
            max_connections=max_connections,
            access_key=access_key,
            secret_key=secret_key,
            role=role,
        ) as client:
            yield cls(client, backoff=backoff, on_call=on_call, limiter=limiter)

    def matches(self, ref: ImageRef, repository: Repository) -> bool:
        return ecr_matches(ref, repository)

    async def ping(self) -> None:
        """DescribeRepositories for one repository: the call the sweep needs anyway, so the
        permission exists, and the cheapest one ECR has."""
        await self._api.call("DescribeRepositories", maxResults=1)

    async def repositories(self) -> list[Repository]:
        found: list[Repository] = []
        async for page in self._api.pages("DescribeRepositories", maxResults=PAGE_SIZE):
            found.extend(self._learn(_repository(r)) for r in page.get("repositories", ()))
        return found

    async def repository(self, name: str) -> Repository:
        """The repository with its URI. Every repository of one registry shares the URI's
        host, so only the first name costs a DescribeRepositories call; a name that does
        not exist fails at its first listing (RepositoryNotFoundError) either way."""
        async with self._learning:
            if self._registry is None:
                page = await self._api.call("DescribeRepositories", repositoryNames=[name])
                for found in page.get("repositories", ()):
                    self._learn(_repository(found))
        if self._registry is None:
            raise RepositoryNotFoundError(
                f"DescribeRepositories: {name} not found",
                code="RepositoryNotFoundException",
                operation="DescribeRepositories",
            )
        host, registry_id = self._registry
        return Repository(name, f"{host}/{name}", registry_id)

    def _learn(self, repository: Repository) -> Repository:
        """Remember the registry's host and id from a repository the registry described."""
        host, slash, _ = repository.uri.partition("/")
        if self._registry is None and slash and repository.registry_id:
            self._registry = (host, repository.registry_id)
        return repository

    async def images(self, repository: Repository) -> list[Image]:
        """Every ACTIVE image of the repository, in pages of 1000."""
        found: list[Image] = []
        pages = self._api.pages(
            "DescribeImages", repositoryName=repository.name, maxResults=PAGE_SIZE
        )
        async for page in pages:
            found.extend(image_from_detail(d) for d in page.get("imageDetails", ()))
        return found

    async def recheck(self, repository: Repository, digests: Sequence[str]) -> dict[str, Image]:
        """The current state of up to 100 digests; absent ones are gone.

        DescribeImages by id fails the whole call when one id is missing, so on
        ImageNotFoundException the survivors are found per id first (BatchGetImage) and only
        they are described.
        """
        wanted = _at_most_a_batch(digests)
        if not wanted:
            return {}
        try:
            return await self._describe_ids(repository, wanted)
        except RegistryError as error:
            if error.code != "ImageNotFoundException":
                raise
        gone = await self._gone(repository, wanted)
        present = [d for d in wanted if d not in gone]
        return await self._describe_ids(repository, present) if present else {}

    async def _describe_ids(self, repository: Repository, digests: list[str]) -> dict[str, Image]:
        response = await self._api.call(
            "DescribeImages", repositoryName=repository.name, imageIds=_ids(digests)
        )
        images = (image_from_detail(d) for d in response.get("imageDetails", ()))
        return {image.digest: image for image in images}

    async def own_rules(self, repository: Repository) -> LifecyclePolicy | None:
        """The repository's own lifecycle policy, validated like any other; None without one."""
        try:
            result = await self._api.call("GetLifecyclePolicy", repositoryName=repository.name)
        except RegistryError as error:
            if error.code == "LifecyclePolicyNotFoundException":
                return None
            raise
        text = result.get("lifecyclePolicyText")
        where = f"{repository.name}: ECR lifecycle policy"
        return parse_policy_text(str(text), where=where) if text else None

    async def delete(self, repository: Repository, digests: Sequence[str]) -> DeleteResult:
        """Delete up to 100 digests in one call; the result covers each requested digest."""
        wanted = _at_most_a_batch(digests)
        if not wanted:
            return DeleteResult()
        response = await self._api.call(
            "BatchDeleteImage", repositoryName=repository.name, imageIds=_ids(wanted)
        )
        deleted = {i["imageDigest"] for i in response.get("imageIds", ()) if "imageDigest" in i}
        failed: dict[str, DeleteFailure] = {}
        for failure in response.get("failures", ()):
            digest = failure.get("imageId", {}).get("imageDigest", "")
            code = failure.get("failureCode", "")
            if code == "ImageNotFound":  # already gone: the state we wanted
                deleted.add(digest)
            elif digest in wanted:
                failed[digest] = _failure(digest, code, failure.get("failureReason", ""))
        unreported = [d for d in wanted if d not in deleted and d not in failed]
        if unreported:
            deleted |= await self._gone(repository, unreported)
        for digest in (d for d in unreported if d not in deleted):
            failed[digest] = DeleteFailure(digest, "NotDeleted", "the registry did not delete it")
        return DeleteResult(
            deleted=tuple(d for d in wanted if d in deleted),
            failed=tuple(failed[d] for d in wanted if d in failed),
        )

    async def _gone(self, repository: Repository, digests: list[str]) -> set[str]:
        """Which of these digests no longer exist (BatchGetImage reports per id)."""
        present = await self.manifests(repository, digests)
        return {d for d in digests if d not in present}

    async def manifests(self, repository: Repository, digests: Sequence[str]) -> dict[str, str]:
        """Manifest text by digest (indexes included), 100 per BatchGetImage call."""
        wanted = list(dict.fromkeys(digests))
        manifests: dict[str, str] = {}
        for start in range(0, len(wanted), BATCH_LIMIT):
            chunk = wanted[start : start + BATCH_LIMIT]
            response = await self._api.call(
                "BatchGetImage",
                repositoryName=repository.name,
                imageIds=_ids(chunk),
                acceptedMediaTypes=ALL_MANIFEST_TYPES,
            )
            for image in response.get("images", ()):
                digest = image.get("imageId", {}).get("imageDigest")
                if digest in chunk and "imageManifest" in image:
                    manifests[digest] = image["imageManifest"]
        return manifests

    async def referrers(self, repository: Repository, digest: str) -> list[str] | None:
        """Digests of the OCI referrers of `digest` (ListImageReferrers, every page).

        None when the endpoint does not implement the operation (moto, older ECR-compatible
        servers): callers degrade to the other sources of referrer links.
        """
        params: dict[str, Any] = {
            "repositoryName": repository.name,
            "subjectId": {"imageDigest": digest},
            "maxResults": REFERRERS_PAGE_SIZE,
        }
        found: list[str] = []
        while True:
            try:
                page = await self._api.call_optional("ListImageReferrers", **params)
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


def _failure(digest: str, code: str, message: str) -> DeleteFailure:
    kind = FailureKind.REFERENCED if code == REFERENCED_BY_INDEX else FailureKind.ERROR
    return DeleteFailure(digest, code, message, kind)
