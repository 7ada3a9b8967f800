"""A small fake of the AWS services the in-use sources read, on a real socket.

moto cannot stand in where the digests are: its ECS DescribeTasks returns the first
container only and no `imageDigest`, it has no DescribeServiceRevisions, its Lambda
`ResolvedImageUri` is a hash of the URI string, and it has no App Runner. This server speaks
each service's own wire protocol to the real aiobotocore client:
- JSON 1.0/1.1 (`X-Amz-Target: <prefix>.<Operation>`): ECS, EventBridge, App Runner;
- REST-JSON (method and path): Lambda, Batch, EventBridge Scheduler.
State is built with the `add_*` methods; every list operation pages by `page_size`, so the
sources' pagination is exercised; `fail` makes an operation answer an AWS error.
"""

from __future__ import annotations

import itertools
import json
import re
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.support.servers import loopback

ACCOUNT, REGION = "123456789012", "us-east-1"
Handler = Callable[[dict[str, Any], dict[str, str]], dict[str, Any]]
PAGE_SIZES = ("maxResults", "Limit", "MaxItems", "MaxResults")
"""How each service spells the page size a caller asks for; the fake gives at most
`page_size` whatever is asked, as AWS caps its pages."""


def arn(service: str, resource: str) -> str:
    return f"arn:aws:{service}:{REGION}:{ACCOUNT}:{resource}"


@dataclass
class AwsFake:
    page_size: int = 2
    calls: Counter[str] = field(default_factory=Counter)
    fail: dict[str, tuple[str, int]] = field(default_factory=dict)
    """`service:Operation` -> (error code, HTTP status)."""
    definitions: dict[str, list[str]] = field(default_factory=dict)
    """Task-definition ARN -> its container images."""
    clusters: dict[str, dict[str, list[dict[str, Any]]]] = field(default_factory=dict)
    rules: list[tuple[str, str, str]] = field(default_factory=list)
    schedules: list[tuple[str, str, str]] = field(default_factory=list)
    functions: dict[str, dict[str, Any]] = field(default_factory=dict)
    apprunner: list[tuple[str, str]] = field(default_factory=list)
    job_definitions: list[dict[str, Any]] = field(default_factory=list)
    _revision: Counter[str] = field(default_factory=Counter)
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    # --- building state -------------------------------------------------------------------

    def add_task_definition(self, family: str, *images: str) -> str:
        self._revision[family] += 1
        name = arn("ecs", f"task-definition/{family}:{self._revision[family]}")
        self.definitions[name] = list(images)
        return name

    def cluster(self, name: str) -> dict[str, list[dict[str, Any]]]:
        return self.clusters.setdefault(name, {"tasks": [], "services": []})

    def add_task(
        self, cluster: str, definition: str, containers: list[tuple[str, str | None]], **extra: Any
    ) -> None:
        task = {
            "taskArn": arn("ecs", f"task/{cluster}/{next(self._ids):032x}"),
            "taskDefinitionArn": definition,
            "lastStatus": "RUNNING",
            "group": "family:x",
            "containers": [
                {"name": f"c{i}", "image": image} | ({"imageDigest": digest} if digest else {})
                for i, (image, digest) in enumerate(containers)
            ],
        }
        self.cluster(cluster)["tasks"].append(task | extra)

    def add_service(
        self,
        cluster: str,
        name: str,
        deployments: list[tuple[str, str]],
        revisions: list[list[tuple[str, str | None]]] = (),  # type: ignore[assignment]
    ) -> None:
        self.cluster(cluster)["services"].append(
            {
                "serviceArn": arn("ecs", f"service/{cluster}/{name}"),
                "serviceName": name,
                "deployments": [{"status": s, "taskDefinition": d} for s, d in deployments],
                "currentServiceRevisions": [
                    {"arn": arn("ecs", f"service-revision/{cluster}/{name}/{i}")}
                    for i in range(len(revisions))
                ],
                "_revisions": revisions,
            }
        )

    def add_function(
        self,
        name: str,
        versions: dict[str, tuple[str, str]],
        aliases: dict[str, tuple[str, dict[str, float]]] | None = None,
        package_type: str = "Image",
    ) -> None:
        """`versions`: qualifier ($LATEST, "1", ...) -> (ImageUri, ResolvedImageUri)."""
        self.functions[name] = {"versions": versions, "aliases": aliases or {},
                                "type": package_type}  # fmt: skip

    # --- serving ------------------------------------------------------------------------

    @asynccontextmanager
    async def running(self) -> AsyncIterator[str]:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        async with loopback(app) as url:
            yield url

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        body = json.loads(raw) if raw else {}
        target = request.headers.get("X-Amz-Target")
        if target:
            prefix, _, operation = target.partition(".")
            service = {"AmazonEC2ContainerServiceV20141113": "ecs", "AWSEvents": "events",
                       "AppRunner": "apprunner"}[prefix]  # fmt: skip
            query: dict[str, str] = {}
        else:
            service, operation, query = self._route(request)
            body |= query
        key = f"{service}:{operation}"
        self.calls[key] += 1
        if key in self.fail:
            code, status = self.fail[key]
            headers = {"x-amzn-ErrorType": code}
            return web.json_response({"__type": code, "message": "refused"}, status=status,
                                     headers=headers)  # fmt: skip
        handler: Handler = getattr(self, f"_{service}_{_snake(operation)}")
        return web.json_response(handler(body, query))

    def _route(self, request: web.Request) -> tuple[str, str, dict[str, str]]:
        path, query = request.path, dict(request.query)
        if path.rstrip("/") == "/2015-03-31/functions":
            return "lambda", "ListFunctions", query
        match = re.fullmatch(r"/2015-03-31/functions/([^/]+)(/aliases|/versions)?/?", path)
        if match:
            query["FunctionName"] = match[1]
            operation = {None: "GetFunction", "/aliases": "ListAliases",
                         "/versions": "ListVersionsByFunction"}[match[2]]  # fmt: skip
            return "lambda", operation, query
        if path == "/v1/describejobdefinitions":
            return "batch", "DescribeJobDefinitions", query
        if path.rstrip("/") == "/schedules":
            return "scheduler", "ListSchedules", query
        match = re.fullmatch(r"/schedules/([^/]+)", path)
        if match:
            return "scheduler", "GetSchedule", query | {"Name": match[1]}
        raise web.HTTPNotFound(text=f"no route for {request.method} {path}")

    def _page(
        self, items: list[Any], body: dict[str, Any], key: str, token: str = "nextToken",  # noqa: S107
        reply: str | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        start = int(body.get(token) or 0)
        asked = next((body[k] for k in PAGE_SIZES if k in body), None)
        end = start + min(int(asked), self.page_size) if asked else start + self.page_size
        page: dict[str, Any] = {key: items[start:end]}
        if end < len(items):
            page[reply or token] = str(end)
        return page

    # --- ECS ----------------------------------------------------------------------------

    def _ecs_list_clusters(self, body: dict[str, Any], _: dict[str, str]) -> dict[str, Any]:
        return self._page([arn("ecs", f"cluster/{c}") for c in self.clusters], body, "clusterArns")

    def _named_cluster(self, body: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
        return self.clusters[str(body["cluster"]).rsplit("/", 1)[-1]]

    def _ecs_list_tasks(self, body: dict[str, Any], _: dict[str, str]) -> dict[str, Any]:
        assert body.get("desiredStatus") == "RUNNING"
        tasks = [t["taskArn"] for t in self._named_cluster(body)["tasks"]]
        return self._page(tasks, body, "taskArns")

    def _ecs_describe_tasks(self, body: dict[str, Any], _: dict[str, str]) -> dict[str, Any]:
        assert len(body["tasks"]) <= 100
        wanted = set(body["tasks"])
        return {"tasks": [t for t in self._named_cluster(body)["tasks"] if t["taskArn"] in wanted]}

    def _ecs_list_services(self, body: dict[str, Any], _: dict[str, str]) -> dict[str, Any]:
        services = [s["serviceArn"] for s in self._named_cluster(body)["services"]]
        return self._page(services, body, "serviceArns")

    def _ecs_describe_services(self, body: dict[str, Any], _: dict[str, str]) -> dict[str, Any]:
        assert len(body["services"]) <= 10
        wanted = set(body["services"])
        found = [s for s in self._named_cluster(body)["services"] if s["serviceArn"] in wanted]
        return {"services": [{k: v for k, v in s.items() if not k.startswith("_")} for s in found]}

    def _ecs_describe_service_revisions(
        self, body: dict[str, Any], _: dict[str, str]
    ) -> dict[str, Any]:
        assert len(body["serviceRevisionArns"]) <= 20
        found = []
        for cluster in self.clusters.values():
            for service in cluster["services"]:
                for entry, images in zip(
                    service["currentServiceRevisions"], service["_revisions"], strict=True
                ):
                    if entry["arn"] in body["serviceRevisionArns"]:
                        found.append({"serviceRevisionArn": entry["arn"], "containerImages": [
                            {"image": i} | ({"imageDigest": d} if d else {}) for i, d in images
                        ]})  # fmt: skip
        return {"serviceRevisions": found}

    def _ecs_list_task_definition_families(
        self, body: dict[str, Any], _: dict[str, str]
    ) -> dict[str, Any]:
        return self._page(sorted(self._revision), body, "families")

    def _ecs_list_task_definitions(self, body: dict[str, Any], _: dict[str, str]) -> dict[str, Any]:
        assert body.get("sort") == "DESC" and body.get("status") == "ACTIVE"
        prefix = body["familyPrefix"]
        names = sorted(
            (n for n in self.definitions if n.rsplit("/", 1)[-1].startswith(prefix)),
            key=lambda n: int(n.rsplit(":", 1)[-1]),
            reverse=True,
        )
        return self._page(names, body, "taskDefinitionArns")

    def _ecs_describe_task_definition(
        self, body: dict[str, Any], _: dict[str, str]
    ) -> dict[str, Any]:
        name = body["taskDefinition"]
        if not name.startswith("arn:"):
            family, _, revision = name.partition(":")
            revision = revision or str(self._revision[family])
            name = arn("ecs", f"task-definition/{family}:{revision}")
        images = self.definitions[name]
        containers = [{"name": f"c{i}", "image": image} for i, image in enumerate(images)]
        return {"taskDefinition": {"taskDefinitionArn": name, "containerDefinitions": containers}}

    # --- EventBridge and Scheduler --------------------------------------------------------

    def _events_list_event_buses(self, body: dict[str, Any], _: dict[str, str]) -> dict[str, Any]:
        buses = sorted({"default", *(bus for bus, _, _ in self.rules)})
        return self._page([{"Name": b} for b in buses], body, "EventBuses", token="NextToken")

    def _events_list_rules(self, body: dict[str, Any], _: dict[str, str]) -> dict[str, Any]:
        bus = body.get("EventBusName", "default")
        rules = [{"Name": name} for b, name, _ in self.rules if b == bus]
        return self._page(rules, body, "Rules", token="NextToken")

    def _events_list_targets_by_rule(
        self, body: dict[str, Any], _: dict[str, str]
    ) -> dict[str, Any]:
        targets = [
            {
                "Id": "t",
                "Arn": arn("ecs", "cluster/prod"),
                "EcsParameters": {"TaskDefinitionArn": d},
            }
            for b, name, d in self.rules
            if name == body["Rule"] and b == body.get("EventBusName", "default")
        ]
        return self._page(targets, body, "Targets", token="NextToken")

    def _scheduler_list_schedules(self, body: dict[str, Any], _: dict[str, str]) -> dict[str, Any]:
        found = [{"Name": n, "GroupName": g} for g, n, _ in self.schedules]
        return self._page(found, body, "Schedules", token="NextToken")

    def _scheduler_get_schedule(
        self, body: dict[str, Any], query: dict[str, str]
    ) -> dict[str, Any]:
        group = query.get("groupName", "default")
        (definition,) = [d for g, n, d in self.schedules if n == body["Name"] and g == group]
        return {"Name": body["Name"], "GroupName": group, "Target": {
            "Arn": arn("ecs", "cluster/prod"), "RoleArn": arn("iam", "role/x"),
            "EcsParameters": {"TaskDefinitionArn": definition}}}  # fmt: skip

    # --- Lambda, App Runner, Batch ---------------------------------------------------------

    def _lambda_list_functions(self, body: dict[str, Any], _: dict[str, str]) -> dict[str, Any]:
        functions = [{"FunctionName": n, "PackageType": f["type"]}
                     for n, f in self.functions.items()]  # fmt: skip
        return self._page(functions, body, "Functions", token="Marker", reply="NextMarker")

    def _lambda_list_aliases(self, body: dict[str, Any], _: dict[str, str]) -> dict[str, Any]:
        aliases = [
            {"Name": alias, "FunctionVersion": version}
            | ({"RoutingConfig": {"AdditionalVersionWeights": weights}} if weights else {})
            for alias, (version, weights) in self.functions[body["FunctionName"]]["aliases"].items()
        ]
        return self._page(aliases, body, "Aliases", token="Marker", reply="NextMarker")

    def _lambda_list_versions_by_function(
        self, body: dict[str, Any], _: dict[str, str]
    ) -> dict[str, Any]:
        versions = [{"Version": v} for v in self.functions[body["FunctionName"]]["versions"]]
        return self._page(versions, body, "Versions", token="Marker", reply="NextMarker")

    def _lambda_get_function(self, body: dict[str, Any], _: dict[str, str]) -> dict[str, Any]:
        function = self.functions[body["FunctionName"]]
        image, resolved = function["versions"][body.get("Qualifier", "$LATEST")]
        return {"Configuration": {"FunctionName": body["FunctionName"]},
                "Code": {"ImageUri": image, "ResolvedImageUri": resolved}}  # fmt: skip

    def _apprunner_list_services(self, body: dict[str, Any], _: dict[str, str]) -> dict[str, Any]:
        services = [{"ServiceName": n, "ServiceArn": arn("apprunner", f"service/{n}/x")}
                    for n, _ in self.apprunner]  # fmt: skip
        return self._page(services, body, "ServiceSummaryList", token="NextToken")

    def _apprunner_describe_service(
        self, body: dict[str, Any], _: dict[str, str]
    ) -> dict[str, Any]:
        name = body["ServiceArn"].split("/")[1]
        (image,) = [i for n, i in self.apprunner if n == name]
        source = {"ImageRepository": {"ImageIdentifier": image, "ImageRepositoryType": "ECR"}}
        return {"Service": {"ServiceName": name, "SourceConfiguration": source}}

    def _batch_describe_job_definitions(
        self, body: dict[str, Any], _: dict[str, str]
    ) -> dict[str, Any]:
        assert body.get("status") == "ACTIVE"
        return self._page(self.job_definitions, body, "jobDefinitions")


def _snake(operation: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in operation).lstrip("_")
