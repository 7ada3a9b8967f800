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

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any, Literal

from aiohttp import web

from cleaner.audit import audit_log
from cleaner.clients.aws import CallHook, default_region
from cleaner.clients.kubernetes import KubeTarget
from cleaner.clients.ratelimit import Limiter
from cleaner.clients.roles import AssumedRole
from cleaner.coordination.lease import lease_namespace, open_coordinator
from cleaner.engine import Engine
from cleaner.engine.artifacts import DEFAULT_CACHE_ENTRIES, ManifestCache
from cleaner.engine.reconcile import OpenIntent, reconcile
from cleaner.errors import ConfigError
from cleaner.in_use import apprunner, aws_lambda, batch, ecs, kubernetes
from cleaner.in_use.aws import Account
from cleaner.in_use.merged import merged
from cleaner.planning.model import Target
from cleaner.planning.policy_file import PolicyFile, RepositoryEntry, load_policy_file
from cleaner.planning.sources import AwsSources
from cleaner.planning.targets import TargetSpec, resolve_targets
from cleaner.ports import AuditSink, Coordinator, InUseSource, Registry
from cleaner.receiver.auth import TokenAuth
from cleaner.receiver.events import Scope
from cleaner.receiver.health import CachedCheck
from cleaner.receiver.http import Deps, Edge, make_app
from cleaner.receiver.metrics import Metrics, QueueMetrics
from cleaner.receiver.pruner import EnginePruner
from cleaner.receiver.routes import Route, TargetsPruner, prefix_of
from cleaner.receiver.scheduler import SchedulerSettings
from cleaner.receiver.sqs import QueueConsumer, SqsQueue
from cleaner.registries.ecr import EcrRegistry
from cleaner.registries.oci import OciRegistry
from cleaner.registries.oci.auth import find_login
from cleaner.registries.oci.first_seen import FirstSeen
from cleaner.settings import EngineSettings, RunSettings, ServeSettings
from cleaner.sweep_metrics import Recorder, recording

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


@dataclass(frozen=True, slots=True)
class TargetEngine:
    """One target's engine, and the policy its repositories are pruned with."""

    spec: TargetSpec[RepositoryEntry]
    policy: PolicyFile
    engine: Engine

    @property
    def target(self) -> Target:
        return self.spec.target


def target_specs(settings: EngineSettings, policy: PolicyFile) -> list[TargetSpec[RepositoryEntry]]:
    """The targets of this run (`cleaner.planning.targets`); ConfigError when there is no
    region to sweep or a target has no repository entries. An OCI registry is one target
    with neither account nor region."""
    if oci_url(settings, policy):
        if settings.role_arns:
            raise ConfigError("--role-arn is an ECR account; the policy names an OCI registry")
        one: TargetSpec[RepositoryEntry] = TargetSpec(region="")
        return [one]
    specs = resolve_targets(
        policy.targets,
        roles=settings.role_arns,
        regions=settings.regions,
        external_id=settings.external_id,
        default_region=default_region(),
    )
    for spec in specs:
        if not (spec.entries or policy.entries):
            raise ConfigError(
                f"{policy.source}: target {spec.target} has no repository entries: give the "
                "file a top-level 'repositories:' list"
            )
    return specs


def target_policy(policy: PolicyFile, spec: TargetSpec[RepositoryEntry]) -> PolicyFile:
    return policy if spec.entries is None else replace(policy, entries=spec.entries)


def oci_url(settings: EngineSettings, policy: PolicyFile) -> str | None:
    """The OCI registry to prune instead of ECR: `--registry`, else the policy's."""
    return settings.registry or policy.registry


@asynccontextmanager
async def open_oci_registry(settings: EngineSettings, url: str) -> AsyncIterator[Registry]:
    # A credential helper is a process: run it off the event loop.
    login = await asyncio.to_thread(
        find_login, url, username=settings.registry_username, password=settings.registry_password
    )
    first_seen = FirstSeen(settings.first_seen_file) if settings.first_seen_file else None
    async with OciRegistry.connect(
        url, login=login, first_seen=first_seen, max_connections=settings.concurrency
    ) as registry:
        yield registry


@asynccontextmanager
async def open_registry(
    settings: EngineSettings,
    region: str,
    *,
    role: AssumedRole | None = None,
    on_call: CallHook | None = None,
    limiter: Limiter | None = None,
    credentials: Credentials | None = None,
    oci: str | None = None,
) -> AsyncIterator[Registry]:
    if oci is not None:
        async with open_oci_registry(settings, oci) as registry:
            yield registry
        return
    async with EcrRegistry.connect(
        region=region,
        endpoint_url=settings.endpoint_url,
        max_connections=settings.concurrency,
        on_call=on_call,
        limiter=limiter,
        access_key=credentials.access_key if credentials else None,
        secret_key=credentials.secret_key if credentials else None,
        role=role,
    ) as registry:
        yield registry


@asynccontextmanager
async def open_in_use(
    settings: EngineSettings, policy: PolicyFile, mode: Mode, accounts: Sequence[Account]
) -> AsyncIterator[InUseSource | None]:
    """Every configured in-use source, merged: each must answer or the run fails closed.

    The AWS sources read every account the run sweeps, each in its targets' regions, and
    the one merged set protects every target: an image in account A is in use when a
    workload in account B runs it by A's URI, and if B cannot be read, A is not pruned.
    """
    if policy.in_use == "off":
        yield None
        return
    options = kubernetes.KubernetesOptions.resolve(
        policy.kubernetes,
        policy.in_use,
        kubeconfig=settings.kubeconfig,
        contexts=settings.kube_contexts,
    )
    watch = mode == "serve"
    async with AsyncExitStack() as stack:
        sources = [await stack.enter_async_context(kubernetes.open_source(options, watch=watch))]
        for section, open_source in _aws_sources(policy.aws):
            for account in accounts:
                source = open_source(section, account, watch=watch)
                sources.append(await stack.enter_async_context(source))
        yield merged(sources)


def accounts_of(
    specs: Sequence[TargetSpec[Any]], roles: Mapping[str, AssumedRole]
) -> list[Account]:
    """One `Account` per role (or the chain's own), with the regions of its targets."""
    regions: dict[str | None, list[str]] = {}
    for spec in specs:
        regions.setdefault(spec.role, []).append(spec.region)
    return [Account(tuple(where), roles[role] if role else None) for role, where in regions.items()]


SourceOpener = Callable[..., AbstractAsyncContextManager[InUseSource]]


def _aws_sources(aws: AwsSources) -> list[tuple[object, SourceOpener]]:
    """The AWS in-use sources the policy file's sections turn on, each with its opener."""
    table: list[tuple[object, SourceOpener]] = [
        (aws.ecs, ecs.open_source),
        (aws.lambda_, aws_lambda.open_source),
        (aws.apprunner, apprunner.open_source),
        (aws.batch, batch.open_source),
    ]
    return [(section, opener) for section, opener in table if section is not None]


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
async def open_engines(
    settings: EngineSettings,
    policy: PolicyFile,
    mode: Mode,
    *,
    audit_path: str | None = None,
    on_call: CallHook | None = None,
    limiter: Limiter | None = None,
    credentials: Credentials | None = None,
) -> AsyncIterator[list[TargetEngine]]:
    """One engine per target, sharing the in-use set, the Leases and the audit log.

    Each target has its own registry client, connection pool and adaptive rate limiter
    (ECR throttles per account and region); `limiter`, for benchmarks, is used only when
    the run has a single target. Each role is assumed once, for all of its regions and its
    in-use sources. With an audit log, intents an earlier run left open are reconciled
    against their target's registry before this process deletes anything.
    """
    specs = target_specs(settings, policy)
    roles = {
        s.role: AssumedRole(s.role, external_id=s.external_id, region=s.region)
        for s in specs
        if s.role
    }
    with audit_log(audit_path) as audit:
        async with AsyncExitStack() as stack:
            in_use = await stack.enter_async_context(
                open_in_use(settings, policy, mode, accounts_of(specs, roles))
            )
            coordinator = await stack.enter_async_context(open_coordination(settings, policy, mode))
            engines = []
            for spec in specs:
                registry = await stack.enter_async_context(
                    open_registry(
                        settings,
                        spec.region,
                        role=roles.get(spec.role or ""),
                        on_call=on_call,
                        limiter=limiter if len(specs) == 1 else None,
                        credentials=credentials,
                        oci=oci_url(settings, policy),
                    )
                )
                sink = stamped(audit.write, spec.target) if audit is not None else None
                engine = Engine(
                    registry,
                    # A plan or sweep reads each manifest once; only the receiver, pruning
                    # the same repositories again and again, gains from remembering them.
                    cache=ManifestCache(DEFAULT_CACHE_ENTRIES if mode == "serve" else 0),
                    in_use=in_use,
                    coordinator=coordinator,
                    audit=sink,
                    target=spec.target,
                )
                engines.append(TargetEngine(spec, target_policy(policy, spec), engine))
            if audit is not None and mode != "plan":
                await _reconcile(audit.open_intents(), engines)
            yield engines


def stamped(sink: AuditSink, target: Target) -> AuditSink:
    """Every record names the target it was written for, so reconciling finds its registry."""
    fields = {
        key: value
        for key, value in (("account", target.account), ("region", target.region))
        if value
    }
    return lambda record: sink({**record, **fields})


async def _reconcile(intents: Sequence[OpenIntent], engines: Sequence[TargetEngine]) -> None:
    """Each open intent against the registry of the target that wrote it; intents from
    before records named their target are reconciled only when there is a single target."""
    for one in engines:
        target, only = one.target, len(engines) == 1
        mine = [
            i
            for i in intents
            if (i.account, i.region) == (target.account, target.region)
            or (only and not (i.account or i.region))
        ]
        if mine:
            assert one.engine.audit is not None  # noqa: S101 - stamped above
            await reconcile(mine, one.engine.registry, one.engine.audit)


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
    """The engine of a single-target run (the demo, the benchmarks)."""
    async with open_engines(
        settings,
        policy,
        mode,
        audit_path=audit_path,
        on_call=on_call,
        limiter=limiter,
        credentials=credentials,
    ) as engines:
        if len(engines) != 1:
            raise ConfigError(f"expected one target, the settings name {len(engines)}")
        yield engines[0].engine


def open_run_metrics(run: RunSettings) -> AbstractAsyncContextManager[Recorder]:
    """The sweep's metrics sinks (Pushgateway, textfile), published when the run ends."""
    return recording(run.metrics, dry_run=not run.apply, shard=run.shard)


@asynccontextmanager
async def open_receiver(
    settings: EngineSettings, serve: ServeSettings, policy: PolicyFile, token: str | None
) -> AsyncIterator[web.Application]:
    """The receiver's application over watching engines, one per target; an event's account
    and region pick its target (`cleaner.receiver.routes`). `cleaner.receiver.serve` runs it."""
    metrics = Metrics()
    async with (
        open_engines(
            settings, policy, "serve", audit_path=serve.audit_log, on_call=metrics.record_ecr_call
        ) as engines,
        open_edges(settings, serve, metrics) as edges,
    ):
        lone = len(engines) == 1
        routes, pruners = [], []
        for one in engines:
            scope = Scope(account=one.target.account or serve.account, region=one.target.region)
            prefix = "" if lone else prefix_of(scope)
            routes.append(Route(scope, _covers(one.policy), prefix))
            pruners.append((prefix, EnginePruner(one.engine, one.policy, settings.concurrency)))
        deps = Deps(
            pruner=pruners[0][1] if lone else TargetsPruner(pruners),
            auth=TokenAuth(token),
            routes=tuple(routes),
            schedule=SchedulerSettings(
                debounce_s=serve.debounce_s,
                max_prunes=serve.max_prunes,
                max_backlog=serve.max_backlog,
                dedupe_window_s=serve.dedupe_window_s,
            ),
            drain_timeout_s=serve.drain_timeout_s,
            metrics=metrics,
            readiness=tuple(
                CachedCheck(f"registry {one.target}", one.engine.registry.ping) for one in engines
            ),
            edges=edges,
        )
        yield make_app(deps)


def _covers(policy: PolicyFile) -> Callable[[str], bool]:
    return lambda repository: policy.entry_for(repository) is not None


@asynccontextmanager
async def open_edges(
    settings: EngineSettings, serve: ServeSettings, metrics: Metrics
) -> AsyncIterator[tuple[Edge, ...]]:
    """The ways in besides POST /events: the SQS consumer when --queue-url is given."""
    if serve.queue_url is None:
        yield ()
        return
    async with SqsQueue.connect(
        serve.queue_url, region=settings.regions[0] if settings.regions else None
    ) as queue:
        yield (QueueConsumer(queue, QueueMetrics(metrics.registry)),)
