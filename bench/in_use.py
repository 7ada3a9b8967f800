"""What one look of the AWS in-use sources costs: calls per snapshot, at a size that matters.

ECS: 50 clusters x 20 services, each service with 2 running tasks of 2 containers and a
task-definition family of 6 ACTIVE revisions (the source keeps the newest 5), plus 10
EventBridge rules and 10 Scheduler schedules starting tasks. Lambda: 50 image functions,
each with 2 aliases and 6 published versions (the newest 3 kept). The AWS services are the
project's fake (`tests/support/aws_fake.py`) on a loopback socket, paging at AWS's caps
(100 per page; Lambda 50), so the call counts are what the real APIs would be asked.

The baseline, counted in the same run, is the same walk without the batch calls:
DescribeTasks and DescribeServices one resource per call, as a script written against the
single-resource APIs would do it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

from cleaner.in_use import aws_lambda, ecs, eventbridge, schedules
from cleaner.in_use.aws import open_apis
from cleaner.planning.references import InUse
from cleaner.planning.sources import EcsSection, LambdaSection
from tests.support.aws_fake import AwsFake

REGION = "us-east-1"
REGISTRY = f"123456789012.dkr.ecr.{REGION}.amazonaws.com"


def build(clusters: int, services: int) -> AwsFake:
    fake = AwsFake(page_size=100)
    for c in range(clusters):
        for s in range(services):
            family = f"c{c}-s{s}"
            for revision in range(6):
                definition = fake.add_task_definition(
                    family, f"{REGISTRY}/{family}:r{revision}", f"{REGISTRY}/envoy:v1"
                )
            fake.add_service(f"cluster{c}", family, [("PRIMARY", definition)])
            for t in range(2):
                digest = f"sha256:{c:016x}{s:016x}{t:032x}"
                fake.add_task(f"cluster{c}", definition,
                              [(f"{REGISTRY}/{family}:r5", digest), (f"{REGISTRY}/envoy:v1", None)],
                              group=f"service:{family}")  # fmt: skip
    for i in range(10):
        fake.rules.append(("default", f"rule{i}", fake.add_task_definition(f"job{i}", "x/y:1")))
        fake.schedules.append(("default", f"schedule{i}", f"job{i}"))
    for f in range(50):
        versions = {v: (f"{REGISTRY}/fn{f}:v{v}", f"{REGISTRY}/fn{f}@sha256:{f:032x}{int(v):032x}")
                    for v in ("1", "2", "3", "4", "5", "6")}  # fmt: skip
        versions["$LATEST"] = (f"{REGISTRY}/fn{f}:main", f"{REGISTRY}/fn{f}@sha256:{f:064x}")
        fake.add_function(f"fn{f}", versions, {"live": ("6", {}), "canary": ("5", {})})
    return fake


async def run_in_use(clusters: int = 50, services: int = 20) -> dict[str, Any]:
    fake = build(clusters, services)
    keys = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}  # unchecked
    async with fake.running() as url:
        with _environment(AWS_ENDPOINT_URL=url, **keys):
            async with (
                open_apis("ecs", [REGION]) as ecs_apis,
                eventbridge.open_rules([REGION]) as events,
                schedules.open_schedules([REGION]) as scheduler,
                open_apis("lambda", [REGION]) as lambda_apis,
            ):
                ecs_look = ecs.EcsLook(EcsSection(), ecs_apis, events, scheduler)
                lambda_look = aws_lambda.LambdaLook(LambdaSection(), lambda_apis)
                figures = {
                    "ecs": await _looks(fake, ecs_look),
                    "lambda": await _looks(fake, lambda_look),
                }
    tasks, services_n = clusters * services * 2, clusters * services
    first = figures["ecs"]["first"]["calls"]
    singles = first.get("ecs:DescribeTasks", 0) + first.get("ecs:DescribeServices", 0)
    figures["ecs"].update(
        clusters=clusters,
        services=services_n,
        tasks=tasks,
        unbatched_calls=sum(first.values()) - singles + tasks + services_n,
    )
    return figures


@contextmanager
def _environment(**values: str) -> Iterator[None]:
    """The AWS chain reads these."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


async def _looks(fake: AwsFake, look: Callable[[], Awaitable[InUse]]) -> dict[str, Any]:
    """The first look, as a sweep makes it, and a second, as a receiver's refresh does."""
    found = {}
    for name in ("first", "second"):
        fake.calls.clear()
        started = time.perf_counter()
        in_use = await look()
        found[name] = {
            "calls": dict(sorted(fake.calls.items())),
            "total_calls": sum(fake.calls.values()),
            "references": len(in_use),
            "wall_s": round(time.perf_counter() - started, 2),
        }
    return found
