"""ECS tasks that EventBridge Scheduler starts: their task definitions, for the ECS source.

ListSchedules names the schedules only; GetSchedule is the one call that shows a target,
so each schedule costs one call.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from cleaner.clients.retry import Backoff
from cleaner.clients.roles import AssumedRole
from cleaner.in_use.aws import Definitions, RegionApi, collect, open_apis, short_name


@asynccontextmanager
async def open_schedules(
    regions: Sequence[str], backoff: Backoff | None = None, role: AssumedRole | None = None
) -> AsyncIterator[list[RegionApi]]:
    async with open_apis("scheduler", regions, role=role, backoff=backoff) as apis:
        yield apis


async def scheduled_definitions(region: RegionApi, definitions: Definitions) -> None:
    api = region.api
    listed = await collect(api, "ListSchedules", "Schedules", cursor="NextToken", MaxResults=100)
    for summary in listed:
        group = summary.get("GroupName") or "default"
        schedule = await api.call("GetSchedule", Name=summary["Name"], GroupName=group)
        target = schedule.get("Target") or {}
        arn = (target.get("EcsParameters") or {}).get("TaskDefinitionArn")
        if arn:
            who = f"ecs:schedule/{group}/{summary['Name']} (task definition {short_name(arn)})"
            definitions[arn].add(who)
