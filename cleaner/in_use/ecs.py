"""The ECS in-use source: what Amazon ECS runs, and what it would run next.

Read per region, for every cluster the `ecs:` section matches:
- running and pending tasks (ListTasks with desiredStatus RUNNING, DescribeTasks 100 at a
  time): each container's `image` and its `imageDigest`. Since ECS agent 1.83 a task runs
  the digest resolved when it was deployed, so the digest protects a task whose tag has
  moved on since ("Container image resolution", Amazon ECS developer guide);
- every service (ListServices, DescribeServices 10 at a time): the task definition of each
  deployment, PRIMARY, ACTIVE and any being rolled back, and the images of its current
  service revisions (DescribeServiceRevisions 20 at a time, where the endpoint has it),
  which name the resolved digests too;
- the newest N ACTIVE revisions of each task-definition family: rollback targets;
- scheduled tasks: EventBridge rules (every event bus) and EventBridge Scheduler schedules
  whose target is an ECS task (`eventbridge.py`, `schedules.py`).
Every task definition named on the way is read once (DescribeTaskDefinition) for the images
its container definitions name: sidecars by tag or by digest included.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from cleaner.clients.retry import Backoff
from cleaner.in_use import eventbridge, schedules
from cleaner.in_use.aws import (
    Account,
    Definitions,
    RegionApi,
    bounded,
    chunks,
    collect,
    container_uses,
    matches_any,
    open_apis,
    short_name,
)
from cleaner.in_use.snapshots import Once, Refreshing
from cleaner.planning.references import InUse, Use
from cleaner.planning.sources import EcsSection
from cleaner.ports import InUseSource

log = logging.getLogger(__name__)
PAGE = 100
"""The most ECS list calls return per page (ListServices would give 10 unasked)."""
MAX_REMEMBERED = 50_000
REVISION = re.compile(r".+:\d+")


class EcsLook:
    """One look at ECS in every configured region."""

    def __init__(
        self,
        section: EcsSection,
        ecs: Sequence[RegionApi],
        events: Sequence[RegionApi] = (),
        scheduler: Sequence[RegionApi] = (),
    ) -> None:
        self.section = section
        self._ecs, self._events, self._scheduler = ecs, events, scheduler
        self._images: dict[str, list[object]] = {}
        """Task-definition revision -> its images: a registered revision never changes, so
        a receiver's refreshes describe only the revisions they have not seen."""

    async def __call__(self) -> InUse:
        uses: list[Use] = []
        for index, region in enumerate(self._ecs):
            definitions: Definitions = defaultdict(set)
            uses += await self._clusters(region, definitions)
            await self._families(region, definitions)
            if self.section.scheduled_tasks and self._events:
                await eventbridge.scheduled_definitions(self._events[index], definitions)
                await schedules.scheduled_definitions(self._scheduler[index], definitions)
            uses += await self._definition_uses(region, definitions)
        return InUse.of(uses)

    async def _clusters(self, region: RegionApi, definitions: Definitions) -> list[Use]:
        arns = await collect(region.api, "ListClusters", "clusterArns", maxResults=PAGE)
        chosen = [a for a in arns if matches_any(short_name(a), self.section.clusters)]
        found = await bounded(_cluster(region, arn, definitions) for arn in chosen)
        return [use for uses in found for use in uses]

    async def _definition_uses(
        self, region: RegionApi, definitions: Mapping[str, set[str]]
    ) -> list[Use]:
        images = await self._images_of(region, sorted(definitions))
        uses: list[Use] = []
        for name, users in definitions.items():
            for image in images[name]:
                for who in users:
                    uses += container_uses(image, None, who)
        return uses

    async def _images_of(self, region: RegionApi, names: list[str]) -> dict[str, list[object]]:
        """The images of each task definition. A named revision (`api:7`, or its ARN) is
        described once for the life of the source: a registered revision never changes. A
        bare family names its latest revision, so it is described on every look."""

        def key(name: str) -> str:  # `api:7` means a different revision in another region
            return f"{region.region} {name}"

        found = {n: self._images[key(n)] for n in names if key(n) in self._images}
        unknown = [n for n in names if n not in found]
        described = await bounded(
            region.api.call("DescribeTaskDefinition", taskDefinition=name) for name in unknown
        )
        if len(self._images) > MAX_REMEMBERED:
            self._images.clear()
        for name, answer in zip(unknown, described, strict=True):
            found[name] = [c.get("image") for c in _containers(answer)]
            if REVISION.fullmatch(short_name(name)):
                self._images[key(name)] = found[name]
        return found

    async def _families(self, region: RegionApi, definitions: Definitions) -> None:
        keep = self.section.task_definition_revisions
        if keep == 0:
            return
        families = await collect(
            region.api, "ListTaskDefinitionFamilies", "families", status="ACTIVE", maxResults=PAGE
        )
        newest = await bounded(_newest(region, family, keep) for family in families)
        for family, arns in zip(families, newest, strict=True):
            for arn in arns:
                definitions[arn].add(f"ecs:task-definition/{short_name(arn)} (newest {keep} "
                                     f"of {family})")  # fmt: skip


async def _cluster(region: RegionApi, arn: str, definitions: Definitions) -> list[Use]:
    cluster = short_name(arn)
    uses = await _tasks(region, arn, cluster, definitions)
    uses += await _services(region, arn, cluster, definitions)
    return uses


async def _tasks(
    region: RegionApi, cluster_arn: str, cluster: str, definitions: Definitions
) -> list[Use]:
    api = region.api
    arns = await collect(api, "ListTasks", "taskArns", cluster=cluster_arn,
                         desiredStatus="RUNNING", maxResults=PAGE)  # fmt: skip
    uses: list[Use] = []
    for chunk in chunks(arns, 100):
        page = await api.call("DescribeTasks", cluster=cluster_arn, tasks=list(chunk))
        for task in page.get("tasks") or ():
            group = task.get("group") or "task"
            status = str(task.get("lastStatus") or "").lower()
            who = (
                f"ecs:{cluster}/{group} (task {short_name(task.get('taskArn', ''))[:8]}, {status})"
            )
            for container in task.get("containers") or ():
                uses += container_uses(container.get("image"), container.get("imageDigest"), who)
            if task.get("taskDefinitionArn"):
                definitions[task["taskDefinitionArn"]].add(who)
    return uses


async def _services(
    region: RegionApi, cluster_arn: str, cluster: str, definitions: Definitions
) -> list[Use]:
    api = region.api
    arns = await collect(api, "ListServices", "serviceArns", cluster=cluster_arn, maxResults=PAGE)
    uses: list[Use] = []
    for chunk in chunks(arns, 10):
        page = await api.call("DescribeServices", cluster=cluster_arn, services=list(chunk))
        for service in page.get("services") or ():
            who = f"ecs:{cluster}/service/{service.get('serviceName', '')}"
            for deployment in service.get("deployments") or ():
                if deployment.get("taskDefinition") and deployment.get("status") != "INACTIVE":
                    arn = deployment["taskDefinition"]
                    definitions[arn].add(f"{who} (task definition {short_name(arn)})")
            revisions = [
                r["arn"] for r in service.get("currentServiceRevisions") or () if "arn" in r
            ]
            uses += await _revisions(region, revisions, who)
    return uses


async def _revisions(region: RegionApi, arns: Sequence[str], who: str) -> list[Use]:
    """The images a service revision resolved; quietly none where the endpoint lacks the
    call (it is from 2024; older ECS-compatible endpoints and moto do not have it)."""
    uses: list[Use] = []
    for chunk in chunks(arns, 20):
        page = await region.api.call_optional(
            "DescribeServiceRevisions", serviceRevisionArns=list(chunk)
        )
        if page is None:
            return uses
        for revision in page.get("serviceRevisions") or ():
            for image in revision.get("containerImages") or ():
                uses += container_uses(image.get("image"), image.get("imageDigest"),
                                       f"{who} (revision)")  # fmt: skip
    return uses


async def _newest(region: RegionApi, family: str, keep: int) -> list[str]:
    """The newest `keep` ACTIVE revisions of exactly this family (`familyPrefix` also
    matches `api-worker` for `api`, so the family is checked on every ARN)."""
    found: list[str] = []
    async for page in region.api.pages(
        "ListTaskDefinitions",
        familyPrefix=family,
        status="ACTIVE",
        sort="DESC",
        maxResults=PAGE,
    ):
        for arn in page.get("taskDefinitionArns") or ():
            if short_name(arn).rsplit(":", 1)[0] == family:
                found.append(arn)
        if len(found) >= keep:
            break
    return found[:keep]


def _containers(answer: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    definition = answer.get("taskDefinition") or {}
    return [c for c in definition.get("containerDefinitions") or () if isinstance(c, dict)]


@asynccontextmanager
async def open_source(
    section: EcsSection, account: Account, *, watch: bool, backoff: Backoff | None = None
) -> AsyncIterator[InUseSource]:
    """The ECS source for the section: read once (sweep) or refreshed (receiver)."""
    regions = account.regions_for(section.regions)
    async with AsyncExitStack() as stack:
        ecs = await stack.enter_async_context(
            open_apis("ecs", regions, role=account.role, backoff=backoff)
        )
        events: list[RegionApi] = []
        scheduler: list[RegionApi] = []
        if section.scheduled_tasks:
            events = await stack.enter_async_context(
                eventbridge.open_rules(regions, backoff, account.role)
            )
            scheduler = await stack.enter_async_context(
                schedules.open_schedules(regions, backoff, account.role)
            )
        look = EcsLook(section, ecs, events, scheduler)
        name = account.source_name("ecs", regions)
        if not watch:
            yield Once(name, account.labelled(look))
            return
        async with Refreshing(name, account.labelled(look)).running() as refreshing:
            yield refreshing
