"""What the AWS in-use sources share: one client per region, and turning what a service
reports about a container into image uses.

Every call goes through `cleaner.clients.aws.AwsApi` (paced, counted, retried); a failure
leaves as `InUseError` naming the operation, so a source that cannot answer fails the run
closed with a message saying which call did not work.
"""

from __future__ import annotations

import asyncio
import fnmatch
from collections.abc import AsyncIterator, Awaitable, Iterable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from cleaner.clients.aws import AwsApi, open_client
from cleaner.clients.retry import Backoff
from cleaner.clients.roles import AssumedRole
from cleaner.errors import InUseError
from cleaner.in_use.snapshots import Look
from cleaner.planning.names import account_of
from cleaner.planning.references import ImageRef, InUse, Use, parse_reference

T = TypeVar("T")
Definitions = dict[str, set[str]]
"""ECS task definition (ARN, or family[:revision]) -> who runs or will run it."""
CONCURRENT_CALLS = 8
"""Calls a source keeps in flight at once; the limiter still paces each operation."""


@dataclass(frozen=True, slots=True)
class RegionApi:
    region: str
    api: AwsApi


@dataclass(frozen=True, slots=True)
class Account:
    """Whose workloads a source reads: the AWS chain's own account, or an assumed role's
    (`cleaner.clients.aws.AssumedRole`), in the regions its targets are in."""

    regions: tuple[str, ...] = ()
    """Read where the section names no regions of its own: the targets' regions."""
    role: AssumedRole | None = None

    def regions_for(self, named: Sequence[str]) -> list[str]:
        return list(named) or list(self.regions)

    def labelled(self, look: Look) -> Look:
        """With a role, each use names its account: "ecs:prod/service/api (account 2222...)",
        so a reason says which account's workload keeps an image."""
        if self.role is None:
            return look
        account = account_of(self.role.arn)

        async def in_account() -> InUse:
            found = await look()
            return InUse.of(Use(u.ref, f"{u.who} (account {account})") for u in found.uses)

        return in_account

    def source_name(self, kind: str, regions: Sequence[str]) -> str:
        """`ecs:eu-west-1`, or with a role `ecs:222222222222/eu-west-1`: errors name it."""
        where = ",".join(regions) or "default region"
        return f"{kind}:{account_of(self.role.arn)}/{where}" if self.role else f"{kind}:{where}"


@asynccontextmanager
async def open_apis(
    service: str,
    regions: Sequence[str],
    *,
    role: AssumedRole | None = None,
    backoff: Backoff | None = None,
) -> AsyncIterator[list[RegionApi]]:
    """A client for `service` in each region, from the standard AWS chain (the endpoint
    from `AWS_ENDPOINT_URL_<SERVICE>` when set, as botocore reads it), or as `role`."""
    async with AsyncExitStack() as stack:
        apis = []
        for region in regions:
            client = await stack.enter_async_context(
                open_client(service, region=region, max_connections=CONCURRENT_CALLS, role=role)
            )
            apis.append(RegionApi(region, AwsApi(client, error=InUseError, backoff=backoff)))
        yield apis


def container_uses(image: object, digest: object, who: str) -> list[Use]:
    """The uses of one container: the reference as written, and, when the service reports
    the digest it resolved (ECS since agent 1.83), the same repository at that digest,
    which protects the image even after its tag has moved."""
    ref = parse_reference(image)
    if ref is None:
        return []
    uses = [Use(ref, who)]
    if isinstance(digest, str) and digest.startswith("sha256:"):
        uses.append(Use(ImageRef(ref.host, ref.path, None, digest.lower()), who))
    return uses


def matches_any(name: str, globs: Sequence[str]) -> bool:
    """No globs means every name."""
    return not globs or any(fnmatch.fnmatchcase(name, g) for g in globs)


def short_name(arn: str) -> str:
    """The last path segment of an ARN: `...:cluster/prod` -> `prod`,
    `...:task-definition/api:7` -> `api:7`."""
    return arn.rsplit("/", 1)[-1]


def chunks(items: Sequence[T], size: int) -> Iterable[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


async def bounded(calls: Iterable[Awaitable[T]], limit: int = CONCURRENT_CALLS) -> list[T]:
    """Run the awaitables at most `limit` at a time; the first failure cancels the rest."""
    slots = asyncio.Semaphore(limit)

    async def one(call: Awaitable[T]) -> T:
        async with slots:
            return await call

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(call)) for call in calls]
    except* InUseError as failed:
        raise failed.exceptions[0] from None
    return [task.result() for task in tasks]


async def collect(api: AwsApi, operation: str, key: str, **params: Any) -> list[Any]:
    """Every item of a paginated list operation, `key` naming the list in each page."""
    items: list[Any] = []
    async for page in api.pages(operation, **params):
        items.extend(page.get(key) or ())
    return items
