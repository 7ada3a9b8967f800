"""The AWS Batch in-use source: the images ACTIVE job definitions name.

DescribeJobDefinitions (status ACTIVE, every page) carries the images in place, wherever
the job type keeps them: `containerProperties`, ECS task properties, EKS pod properties
(init containers too), and each node range of a multi-node job. Batch resolves no digest,
so a tag protects the image that holds it now.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from cleaner.clients.retry import Backoff
from cleaner.in_use.aws import Account, RegionApi, collect, open_apis
from cleaner.in_use.snapshots import Once, Refreshing
from cleaner.planning.references import InUse, Use, parse_reference
from cleaner.planning.sources import BatchSection
from cleaner.ports import InUseSource


class BatchLook:
    def __init__(self, apis: Sequence[RegionApi]) -> None:
        self._apis = apis

    async def __call__(self) -> InUse:
        uses: list[Use] = []
        for region in self._apis:
            definitions = await collect(region.api, "DescribeJobDefinitions", "jobDefinitions",
                                        status="ACTIVE", maxResults=100)  # fmt: skip
            for definition in definitions:
                name, revision = definition.get("jobDefinitionName"), definition.get("revision")
                who = f"batch:{name}:{revision}"
                refs = (parse_reference(image) for image in images_of(definition))
                uses += [Use(ref, who) for ref in refs if ref is not None]
        return InUse.of(uses)


def images_of(definition: Mapping[str, Any]) -> Iterator[object]:
    """Every image a job definition names, whatever its job type."""
    yield from _properties(definition)
    for node_range in (definition.get("nodeProperties") or {}).get("nodeRangeProperties") or ():
        yield from _properties(node_range)


def _properties(holder: Mapping[str, Any]) -> Iterator[object]:
    yield (holder.get("containerProperties") or holder.get("container") or {}).get("image")
    for task in (holder.get("ecsProperties") or {}).get("taskProperties") or ():
        yield from (c.get("image") for c in task.get("containers") or ())
    pod = (holder.get("eksProperties") or {}).get("podProperties") or {}
    for key in ("containers", "initContainers"):
        yield from (c.get("image") for c in pod.get(key) or ())


@asynccontextmanager
async def open_source(
    section: BatchSection,
    account: Account,
    *,
    watch: bool,
    backoff: Backoff | None = None,
) -> AsyncIterator[InUseSource]:
    regions = account.regions_for(section.regions)
    async with open_apis("batch", regions, role=account.role, backoff=backoff) as apis:
        look = BatchLook(apis)
        name = account.source_name("batch", regions)
        if not watch:
            yield Once(name, account.labelled(look))
            return
        async with Refreshing(name, account.labelled(look)).running() as refreshing:
            yield refreshing
