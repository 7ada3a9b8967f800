"""The App Runner in-use source: the image each service deploys.

ListServices names the services; DescribeService gives
`SourceConfiguration.ImageRepository.ImageIdentifier`, the image as configured (a tag, most
often). App Runner reports no resolved digest, so the tag protects whatever image holds it
now; an automatic deployment on push follows that tag.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from cleaner.clients.retry import Backoff
from cleaner.in_use.aws import Account, RegionApi, bounded, collect, open_apis
from cleaner.in_use.snapshots import Once, Refreshing
from cleaner.planning.references import InUse, Use, parse_reference
from cleaner.planning.sources import AppRunnerSection
from cleaner.ports import InUseSource


class AppRunnerLook:
    def __init__(self, apis: Sequence[RegionApi]) -> None:
        self._apis = apis

    async def __call__(self) -> InUse:
        uses: list[Use] = []
        for region in self._apis:
            summaries = await collect(region.api, "ListServices", "ServiceSummaryList",
                                      cursor="NextToken")  # fmt: skip
            found = await bounded(
                _service(region, s["ServiceArn"], s.get("ServiceName", "")) for s in summaries
            )
            uses += [use for service_uses in found for use in service_uses]
        return InUse.of(uses)


async def _service(region: RegionApi, arn: str, name: str) -> list[Use]:
    answer = await region.api.call("DescribeService", ServiceArn=arn)
    source = (answer.get("Service") or {}).get("SourceConfiguration") or {}
    ref = parse_reference((source.get("ImageRepository") or {}).get("ImageIdentifier"))
    return [Use(ref, f"apprunner:{name}")] if ref is not None else []


@asynccontextmanager
async def open_source(
    section: AppRunnerSection,
    account: Account,
    *,
    watch: bool,
    backoff: Backoff | None = None,
) -> AsyncIterator[InUseSource]:
    regions = account.regions_for(section.regions)
    async with open_apis("apprunner", regions, role=account.role, backoff=backoff) as apis:
        look = AppRunnerLook(apis)
        name = account.source_name("apprunner", regions)
        if not watch:
            yield Once(name, account.labelled(look))
            return
        async with Refreshing(name, account.labelled(look)).running() as refreshing:
            yield refreshing
