"""ECS tasks that EventBridge rules start: their task definitions, for the ECS source.

Every event bus is read (ListEventBuses): a rule on a custom bus can start a task on an
event as well as a scheduled rule on the default bus can on a timer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from cleaner.clients.retry import Backoff
from cleaner.clients.roles import AssumedRole
from cleaner.in_use.aws import Definitions, RegionApi, collect, open_apis, short_name


@asynccontextmanager
async def open_rules(
    regions: Sequence[str], backoff: Backoff | None = None, role: AssumedRole | None = None
) -> AsyncIterator[list[RegionApi]]:
    async with open_apis("events", regions, role=role, backoff=backoff) as apis:
        yield apis


async def scheduled_definitions(region: RegionApi, definitions: Definitions) -> None:
    api = region.api
    listed = await collect(api, "ListEventBuses", "EventBuses", cursor="NextToken", Limit=100)
    buses = [bus["Name"] for bus in listed if "Name" in bus] or ["default"]
    for bus in buses:
        rules = await collect(
            api, "ListRules", "Rules", cursor="NextToken", EventBusName=bus, Limit=100
        )
        for rule in rules:
            targets = await collect(
                api, "ListTargetsByRule", "Targets", cursor="NextToken",
                Rule=rule["Name"], EventBusName=bus, Limit=100,
            )  # fmt: skip
            for target in targets:
                arn = (target.get("EcsParameters") or {}).get("TaskDefinitionArn")
                if arn:
                    who = f"ecs:rule/{rule['Name']} (task definition {short_name(arn)})"
                    definitions[arn].add(who)
