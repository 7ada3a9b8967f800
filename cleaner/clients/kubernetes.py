"""The one kubernetes-asyncio factory: which cluster, which credentials, and how a call fails.

`api_client` loads a target's configuration (kubeconfig, context, or the in-cluster service
account) and keeps an exec plugin's short-lived token fresh; `call_json` awaits one raw-JSON
call. Every library failure leaves this module as `ClusterError`, raised `from` the original.
The in-use adapter and the Lease coordinator build on these.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import yaml
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import OpenApiException

from cleaner.errors import ClusterError

DEFAULT_KUBECONFIG = os.path.expanduser("~/.kube/config")
REQUEST_TIMEOUT_S = 60.0
MESSAGE_MAX = 256  # API error bodies can be huge; keep log lines readable (kopf does the same)
TRANSPORT_ERRORS = (OpenApiException, config.ConfigException, aiohttp.ClientError, OSError)


async def call_json(call: Awaitable[Any], *, cluster: str, what: str) -> dict[str, Any]:
    """Await one `_preload_content=False` API call; its JSON body, or ClusterError."""
    try:
        response = await call
        async with response:
            body = await response.read()
        data = json.loads(body) if body else {}
    except (*TRANSPORT_ERRORS, ValueError) as error:
        raise ClusterError(f"{cluster}: {what}: {error}"[:MESSAGE_MAX], cluster=cluster) from error
    if not 200 <= response.status < 300:
        raise http_error(cluster, what, response.status, data)
    return data if isinstance(data, dict) else {}


def http_error(cluster: str, what: str, status: int, data: object) -> ClusterError:
    message = json_object(data).get("message") or json_object(data).get("reason") or "error"
    text = f"{cluster}: {what}: HTTP {status} {message}"[:MESSAGE_MAX]
    return ClusterError(text, cluster=cluster, status=status)


@dataclass(frozen=True, slots=True)
class KubeTarget:
    """One cluster to ask: a kubeconfig file and/or context, or (neither) the default."""

    kubeconfig: str | None = None
    context: str | None = None

    def __str__(self) -> str:
        return self.context or self.kubeconfig or "default cluster"


def in_cluster(environ: Mapping[str, str] = os.environ) -> bool:
    return bool(environ.get("KUBERNETES_SERVICE_HOST"))


def config_available(target: KubeTarget, environ: Mapping[str, str] = os.environ) -> bool:
    """For `protect.in_use: auto`: is there any cluster config `api_client` could load?"""
    explicit = target.kubeconfig or target.context or environ.get("KUBECONFIG")
    return bool(explicit) or in_cluster(environ) or os.path.exists(DEFAULT_KUBECONFIG)


async def api_client(
    target: KubeTarget, environ: Mapping[str, str] = os.environ
) -> client.ApiClient:
    """An ApiClient for the target. Precedence: --kubeconfig, KUBECONFIG, in-cluster, ~/.kube."""
    configuration = client.Configuration()
    path = target.kubeconfig or environ.get("KUBECONFIG")
    try:
        if not path and target.context is None and in_cluster(environ):
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        else:
            loader = await config.load_kube_config(
                config_file=path or DEFAULT_KUBECONFIG,  # may list several files, `:`-separated
                context=target.context,
                client_configuration=configuration,
                persist_config=False,  # never write tokens back into a (read-only) kubeconfig
            )
            if hasattr(loader, "exec_plugin_expiry"):
                configuration.refresh_api_key_hook = _exec_token_refresh(loader, str(target))
    except _CONFIG_ERRORS as error:
        raise ClusterError(
            f"{target}: cannot load Kubernetes config: {error}", cluster=str(target)
        ) from error
    return client.ApiClient(configuration)


_CONFIG_ERRORS = (config.ConfigException, OSError, yaml.YAMLError, KeyError, TypeError)


def _exec_token_refresh(
    loader: Any, cluster: str
) -> Callable[[client.Configuration], Awaitable[None]]:
    """A hook the client awaits before each request: an exec plugin's token (`aws eks
    get-token` gives 15 minutes) is fetched again once it is about to expire, so a receiver
    watching a cluster from outside keeps working. A plugin that fails is a ClusterError:
    the watcher then fails closed and retries instead of losing its task."""
    # One run at a time: the seven watches of a cluster would otherwise start seven plugins
    # at the expiry, and a request cancelled mid-run would leave its plugin process behind.
    running = asyncio.Lock()

    async def refresh(configuration: client.Configuration) -> None:
        async with running:
            try:
                await loader.load_from_exec_plugin()  # runs the plugin only near the expiry
            except (*_CONFIG_ERRORS, RuntimeError, ValueError) as error:
                text = f"{cluster}: credentials: {error}"[:MESSAGE_MAX]
                raise ClusterError(text, cluster=cluster) from error
        configuration.api_key["BearerToken"] = loader.token

    return refresh


def json_object(value: object) -> Mapping[str, Any]:
    """`value` if it is a JSON object, else an empty one: API objects can be partial."""
    return value if isinstance(value, dict) else {}


def json_objects(value: object) -> list[Mapping[str, Any]]:
    """The JSON objects of a list, skipping anything else."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []
