"""The composition root: settings and a policy file in, opened adapters and an `Engine` out.

The only module that picks adapters. `cli` (plan, sweep, serve), `demo` and `bench` all open
their engine here, so the three ways in run the same house. Each `open_*` is an async
context manager that closes what it opened, in reverse order.

Modes:
- `plan`: nothing is deleted, so no coordinator;
- `sweep`: in-use sources are read once per run; Leases when the sweep deletes;
- `serve`: in-use sources are watched for the life of the process; Leases always; with
  `--queue-url`, an SQS consumer feeds the same intake as `POST /events`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Literal

from aiohttp import web

from cleaner.audit import audit_log
from cleaner.clients.aws import CallHook, default_region
from cleaner.clients.kubernetes import KubeTarget
from cleaner.clients.ratelimit import Limiter
from cleaner.coordination.lease import lease_namespace, open_coordinator
from cleaner.engine import Engine
from cleaner.engine.reconcile import reconcile
from cleaner.in_use import kubernetes
from cleaner.in_use.merged import merged
from cleaner.planning.policy_file import PolicyFile, load_policy_file
from cleaner.ports import Coordinator, InUseSource, Registry
from cleaner.receiver.auth import TokenAuth
from cleaner.receiver.events import Scope
from cleaner.receiver.health import CachedCheck
from cleaner.receiver.http import Deps, Edge, make_app
from cleaner.receiver.metrics import Metrics, QueueMetrics
from cleaner.receiver.pruner import EnginePruner
from cleaner.receiver.scheduler import SchedulerSettings
from cleaner.receiver.sqs import QueueConsumer, SqsQueue
from cleaner.registries.ecr import EcrRegistry
from cleaner.settings import EngineSettings, ServeSettings

log = logging.getLogger(__name__)
Mode = Literal["plan", "sweep", "serve"]


@dataclass(frozen=True, slots=True)
class Credentials:
    """Static keys, for the demo's emulator; everything else uses the AWS chain."""

    access_key: str
    secret_key: str


def load_policy(settings: EngineSettings) -> PolicyFile:
    """Read and validate the policy before anything connects: bad input deletes nothing."""
    return load_policy_file(settings.policy_path)


@asynccontextmanager
async def open_registry(
    settings: EngineSettings,
    *,
    on_call: CallHook | None = None,
    limiter: Limiter | None = None,
    credentials: Credentials | None = None,
) -> AsyncIterator[Registry]:
    async with EcrRegistry.connect(
        region=settings.region,
        endpoint_url=settings.endpoint_url,
        max_connections=settings.concurrency,
        on_call=on_call,
        limiter=limiter,
        access_key=credentials.access_key if credentials else None,
        secret_key=credentials.secret_key if credentials else None,
    ) as registry:
        yield registry


@asynccontextmanager
async def open_in_use(
    settings: EngineSettings, policy: PolicyFile, mode: Mode
) -> AsyncIterator[InUseSource | None]:
    """Every configured in-use source, merged: each must answer or the run fails closed."""
    if policy.in_use == "off":
        yield None
        return
    options = kubernetes.KubernetesOptions.resolve(
        policy.kubernetes,
        policy.in_use,
        kubeconfig=settings.kubeconfig,
        contexts=settings.kube_contexts,
    )
    async with AsyncExitStack() as stack:
        sources = [
            await stack.enter_async_context(kubernetes.open_source(options, watch=mode == "serve")),
        ]
        yield merged(sources)


@asynccontextmanager
async def open_coordination(
    settings: EngineSettings,
    policy: PolicyFile,
    mode: Mode,
    environ: Mapping[str, str] = os.environ,
) -> AsyncIterator[Coordinator | None]:
    """Leases when this process deletes and knows a namespace (in a pod, its own)."""
    namespace = lease_namespace(policy.coordination.namespace, environ)
    if mode == "plan" or namespace is None:
        yield None
        return
    contexts = settings.kube_contexts or policy.kubernetes.contexts
    target = KubeTarget(
        settings.kubeconfig or policy.kubernetes.kubeconfig, contexts[0] if contexts else None
    )
    async with open_coordinator(target, namespace, policy.coordination.lease_seconds) as leases:
        yield leases


@asynccontextmanager
async def open_engine(
    settings: EngineSettings,
    policy: PolicyFile,
    mode: Mode,
    *,
    audit_path: str | None = None,
    on_call: CallHook | None = None,
    limiter: Limiter | None = None,
    credentials: Credentials | None = None,
) -> AsyncIterator[Engine]:
    """The engine for one process, with every adapter its settings and policy ask for.

    With an audit log, intents an earlier run left open are reconciled against the
    registry before this process deletes anything (`cleaner.engine.reconcile`).
    """
    with audit_log(audit_path) as audit:
        async with (
            open_registry(
                settings, on_call=on_call, limiter=limiter, credentials=credentials
            ) as registry,
            open_in_use(settings, policy, mode) as in_use,
            open_coordination(settings, policy, mode) as coordinator,
        ):
            if audit is not None and mode != "plan":
                await reconcile(audit.open_intents(), registry, audit.write)
            sink = audit.write if audit is not None else None
            yield Engine(registry, in_use=in_use, coordinator=coordinator, audit=sink)


def serving_region(settings: EngineSettings) -> str | None:
    """The region whose events the receiver serves: --region, else the AWS chain's."""
    return settings.region or default_region()


@asynccontextmanager
async def open_receiver(
    settings: EngineSettings, serve: ServeSettings, policy: PolicyFile, token: str | None
) -> AsyncIterator[web.Application]:
    """The receiver's application over a watching engine; `cleaner.receiver.serve` runs it."""
    metrics = Metrics()
    async with (
        open_engine(
            settings, policy, "serve", audit_path=serve.audit_log, on_call=metrics.record_ecr_call
        ) as engine,
        open_edges(settings, serve, metrics) as edges,
    ):
        deps = Deps(
            pruner=EnginePruner(engine, policy, settings.concurrency),
            auth=TokenAuth(token),
            scope=Scope(account=serve.account, region=serving_region(settings)),
            schedule=SchedulerSettings(
                debounce_s=serve.debounce_s,
                max_prunes=serve.max_prunes,
                max_backlog=serve.max_backlog,
                dedupe_window_s=serve.dedupe_window_s,
            ),
            drain_timeout_s=serve.drain_timeout_s,
            metrics=metrics,
            readiness=(CachedCheck("registry", engine.registry.ping),),
            covers=lambda repository: policy.entry_for(repository) is not None,
            edges=edges,
        )
        yield make_app(deps)


@asynccontextmanager
async def open_edges(
    settings: EngineSettings, serve: ServeSettings, metrics: Metrics
) -> AsyncIterator[tuple[Edge, ...]]:
    """The ways in besides POST /events: the SQS consumer when --queue-url is given."""
    if serve.queue_url is None:
        yield ()
        return
    async with SqsQueue.connect(serve.queue_url, region=settings.region) as queue:
        yield (QueueConsumer(queue, QueueMetrics(metrics.registry)),)
