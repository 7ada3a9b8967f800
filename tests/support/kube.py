"""kmock's Kubernetes emulator, extended server-side where kmock 0.8 falls short.

- `Apiserver` honours `limit` and `continue` (the emulator returns every object in one page),
  and recognises `watch=True` (kubernetes-asyncio sends `True`; kmock only recognises
  `watch=true`, the API server takes both).
- `LeaseServer` adds resourceVersions and PUT with optimistic concurrency, the way the API
  server does it: every write stamps a new resourceVersion, and a replace carrying a stale
  one is refused with 409 Conflict.

Both override kmock internals (`_handle`, `_serve_list`, `_requests`), hence the `kmock<0.9`
pin in pyproject.toml.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import aiohttp.web
import attrs
import kmock

from cleaner.coordination.lease import lease_name

RESOURCES = (
    "v1/pods",
    "apps/v1/deployments",
    "apps/v1/replicasets",
    "apps/v1/statefulsets",
    "apps/v1/daemonsets",
    "batch/v1/jobs",
    "batch/v1/cronjobs",
)


def digest(n: int) -> str:
    return f"sha256:{n:064x}"


LEASES = kmock.resource("coordination.k8s.io/v1/leases")
NS = "ecr-cleaner"


@attrs.define(kw_only=True)
class Apiserver(kmock.KubernetesEmulator):
    """kmock's emulator, plus paged lists and kubernetes-asyncio's spelling of watch."""

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        if request.action is kmock.action.LIST and request.params.get("watch") == "True":
            watch = attrs.evolve(request, action=kmock.action.WATCH)
            self._requests[self._requests.index(request)] = watch  # reactions look it up
            request = watch
        return await super()._handle(request)

    async def _serve_list(self, request: kmock.Request) -> Any:
        result = await super()._serve_list(request)
        items, limit = result["items"], int(request.params.get("limit") or len(result["items"]))
        start = int(request.params.get("continue") or 0)
        if start + limit < len(items):
            result["metadata"]["continue"] = str(start + limit)
        result["items"] = items[start : start + limit]
        return result

    def lists(self, plural: str) -> list[kmock.Request]:
        return [
            r
            for r in self._requests
            if r.action is kmock.action.LIST and r.resource and r.resource.plural == plural
        ]


@attrs.define(kw_only=True)
class LeaseServer(kmock.KubernetesEmulator):
    """kmock's emulator, plus resourceVersions and PUT with optimistic concurrency."""

    version: int = 0
    rival: dict[str, Any] | None = None
    """A Lease another holder creates just before our next create: the race we lose."""

    def stamp(self, body: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        body.setdefault("metadata", {})["resourceVersion"] = str(self.version)
        return body

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        if request.resource == LEASES and request.action is kmock.action.CREATE:
            if self.rival is not None:
                name = request.data["metadata"]["name"]
                self.objects[LEASES, request.namespace, name] = self.stamp(self.rival)
                self.rival = None
            self.stamp(request.data)
        if request.resource == LEASES and request.method is kmock.method.PUT and request.name:
            return self.replace(request)
        return await super()._handle(request)

    def replace(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        key = (LEASES, request.namespace, request.name)
        if key not in self.objects or self.objects[key].deleted:
            raise kmock.KubernetesObjectNotFoundError()
        stored = self.objects[key]["metadata"]["resourceVersion"]
        if request.data.get("metadata", {}).get("resourceVersion") != stored:
            raise kmock.KubernetesError(
                status=409, reason="Conflict", message="the object has been modified"
            )
        self.objects[key].create(self.stamp(request.data))
        return aiohttp.web.json_response(self.objects[key].raw)

    def lease(self, repository: str) -> dict[str, Any]:
        return dict(self.objects[LEASES, NS, lease_name(repository)].raw)

    def put_lease(self, repository: str, holder: str, renewed: datetime, duration_s: int) -> None:
        name = lease_name(repository)
        spec = {
            "holderIdentity": holder,
            "leaseDurationSeconds": duration_s,
            "renewTime": renewed.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        }
        body = {"metadata": {"name": name, "namespace": NS}, "spec": spec}
        self.objects[LEASES, NS, name] = self.stamp(body)


def containers(*images: str) -> dict[str, Any]:
    return {"containers": [{"name": f"c{i}", "image": image} for i, image in enumerate(images)]}


def meta(name: str, namespace: str = "prod") -> dict[str, Any]:
    return {"name": name, "namespace": namespace}


def template(image: str, **spec: Any) -> dict[str, Any]:
    """A workload spec with the fields the client's models insist on."""
    labels = {"app": "x"}
    pods = {"metadata": {"labels": labels}, "spec": containers(image)}
    return {"selector": {"matchLabels": labels}, "template": pods, **spec}
