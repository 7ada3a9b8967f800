"""The one use case: list, plan, and (unless dry-run) apply. CLI, receiver and CronJob call it.

Dry-run is not threaded through the deletes: `run` plans every repository, and only when
`apply` is true does it hand the plan's expired digests to the registry.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections.abc import Callable, Iterable
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Protocol

from cleaner.engine.apply import REFERENCED_BY_INDEX, Applier, AuditSink, Outcome
from cleaner.engine.artifacts import ManifestCache, ManifestSource, load_graph
from cleaner.errors import CleanerError
from cleaner.planning.graph import ArtifactGraph
from cleaner.planning.lifecycle import parse_policy_text
from cleaner.planning.model import (
    Decision,
    DeleteResult,
    Image,
    LifecyclePolicy,
    Plan,
    Repository,
    RepositoryReport,
    RunReport,
    Verdict,
    newest_first,
)
from cleaner.planning.planner import plan_repository
from cleaner.planning.policy_file import PolicyFile
from cleaner.planning.references import InUse, in_use_protection

log = logging.getLogger(__name__)

DEFAULT_CONCURRENCY = 10
REFERENCED_REASON = "kept: the registry refused, an image index still references it"


class Registry(ManifestSource, Protocol):
    """What the engine needs from a registry; `cleaner.registries.ecr.EcrRegistry` provides it."""

    async def list_repositories(self) -> list[Repository]: ...

    async def list_images(self, repository: str) -> list[Image]: ...

    async def delete_images(self, repository: str, digests: Iterable[str]) -> DeleteResult: ...

    async def get_lifecycle_policy(self, repository: str) -> str | None: ...

    async def describe_images(
        self, repository: str, digests: Iterable[str]
    ) -> dict[str, Image]: ...


@dataclass(frozen=True, slots=True)
class SweepRequest:
    policy: PolicyFile
    now: datetime
    repositories: tuple[str, ...] = ()
    """Names to prune; empty means every repository the registry lists."""
    apply: bool = False
    """False is a dry run: plan and report, delete nothing."""
    concurrency: int = DEFAULT_CONCURRENCY
    """Most registry calls in flight at once, across all repositories."""
    shard: Shard | None = None
    """With no names given, only the repositories this shard owns."""

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")


@dataclass(frozen=True, slots=True)
class Shard:
    """Shard `index` of `count`: a stable hash of the repository name picks the shard, so an
    Indexed Job's pods split the registry without talking to each other."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index}/{self.count}: need 0 <= index < count")

    def owns(self, repository: str) -> bool:
        digest = hashlib.sha256(repository.encode()).digest()
        return int.from_bytes(digest[:8], "big") % self.count == self.index


@dataclass(slots=True)
class Progress:
    """Callbacks for a progress display; all optional."""

    on_repositories: Callable[[int], None] = lambda total: None
    on_repository_done: Callable[[RepositoryReport], None] = lambda report: None
    on_deleted: Callable[[int], None] = lambda count: None


class InUseSource(Protocol):
    """Where the images clusters run come from; raises ClusterError when it cannot tell."""

    async def snapshot(self) -> InUse: ...


class Coordinator(Protocol):
    """Mutual exclusion per repository across processes (a Kubernetes Lease)."""

    def hold(self, repository: str) -> AbstractAsyncContextManager[object]: ...


@dataclass(slots=True)
class Engine:
    """The one pruning engine; CLI, receiver and CronJob each hold one.

    `cache` keeps parsed manifests across runs (they never change for a digest). With
    `in_use`, images a cluster runs are held, and a cluster that cannot be read fails the
    repository closed. With `coordinator`, each prune that deletes holds the repository's
    lock, so receiver replicas and the CronJob never prune one repository at once.
    """

    registry: Registry
    cache: ManifestCache = field(default_factory=ManifestCache)
    in_use: InUseSource | None = None
    coordinator: Coordinator | None = None
    audit: AuditSink | None = None
    """Receives one record per deleted image (`sweep --audit-log FILE` appends them)."""

    async def run(self, request: SweepRequest, progress: Progress | None = None) -> RunReport:
        """Prune every requested repository; one repository's failure never stops the others."""
        slots = asyncio.Semaphore(request.concurrency)
        progress = progress or Progress()
        run_id = uuid.uuid4().hex[:12]
        log.info("run %s: %s", run_id, "apply" if request.apply else "dry run")
        applier = Applier(
            self.registry,
            slots,
            run_id,
            in_use=self.in_use.snapshot if self.in_use else None,
            audit=self.audit,
            on_deleted=progress.on_deleted,
        )
        context = _Run(self, request, slots, progress, applier)
        repositories = await self._repositories(request)
        chosen = [r for r in repositories if request.policy.entry_for(r.name) is not None]
        for skipped in sorted({r.name for r in repositories} - {r.name for r in chosen}):
            log.info("%s: no policy entry matches; left alone", skipped)
        context.progress.on_repositories(len(chosen))
        repo_slots = asyncio.Semaphore(request.concurrency)

        async def one(repository: Repository) -> RepositoryReport:
            async with repo_slots:
                report = await prune_repository(context, repository)
            context.progress.on_repository_done(report)
            return report

        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(r)) for r in chosen]
        return RunReport(dry_run=not request.apply, repositories=tuple(t.result() for t in tasks))

    async def _repositories(self, request: SweepRequest) -> list[Repository]:
        if request.repositories:
            return [Repository(name) for name in request.repositories]
        listed = await self.registry.list_repositories()
        return [r for r in listed if request.shard is None or request.shard.owns(r.name)]


async def run(
    registry: Registry, request: SweepRequest, progress: Progress | None = None
) -> RunReport:
    """A one-off run with a fresh engine: no cluster, no coordination."""
    return await Engine(registry).run(request, progress)


@dataclass(frozen=True, slots=True)
class _Run:
    """What every repository of one run shares."""

    engine: Engine
    request: SweepRequest
    api_slots: asyncio.Semaphore
    progress: Progress
    applier: Applier


async def prune_repository(context: _Run, repository: Repository) -> RepositoryReport:
    name = repository.name
    coordinator = context.engine.coordinator
    held = coordinator.hold(name) if coordinator and context.request.apply else nullcontext()
    try:
        async with held:
            return await _prune(context, repository)
    # A registry or cluster that cannot be read, a bad `rules: ecr` policy, a busy or lost
    # Lease: that repository fails, nothing more is deleted in it, the others carry on.
    except CleanerError as error:
        log.error("%s: %s", name, error)
        return RepositoryReport(repository=name, error=str(error))


async def _prune(context: _Run, repository: Repository) -> RepositoryReport:
    name = repository.name
    plan, graph = await make_plan(context, repository)  # errors: see prune_repository
    log.info("%s: %d images, %d to expire", name, len(plan.decisions), len(plan.expire))
    limit = context.request.policy.safety.max_deletions
    if limit is not None and len(plan.expire) > limit:
        # A brake, not a trim: cutting the list would delete an arbitrary subset.
        brake = f"max_deletions: {len(plan.expire)} planned, limit {limit}; nothing deleted"
        log.error("%s: %s", name, brake)
        return RepositoryReport(repository=name, plan=plan, error=brake)
    if not context.request.apply or not plan.expire:
        return RepositoryReport(repository=name, plan=plan)
    outcome = await context.applier.apply(repository, plan, graph)
    return settle(plan, outcome)


async def make_plan(context: _Run, repository: Repository) -> tuple[Plan, ArtifactGraph]:
    """List the repository, read its artifact links, and plan it with the entry's rules."""
    name, policy, engine = repository.name, context.request.policy, context.engine
    entry = policy.entry_for(name)
    assert entry is not None  # noqa: S101 - run() only passes matched names
    async with context.api_slots:
        images = await engine.registry.list_images(name)
        lifecycle = entry.lifecycle or await _own_policy(engine.registry, name)
        graph = await load_graph(engine.registry, name, images, engine.cache, concurrency=1)
    if lifecycle is None:
        reason = "kept: rules: ecr and the repository has no ECR lifecycle policy"
        plan = Plan(name, tuple(Decision(i, Verdict.KEEP, reason) for i in newest_first(images)))
        return plan, graph
    # Read the clusters after the registry, as late as possible before deciding.
    in_use = await engine.in_use.snapshot() if engine.in_use else None
    held = in_use_protection(repository, images, in_use) if in_use is not None else {}
    plan = plan_repository(
        name,
        images,
        lifecycle,
        context.request.now,
        policy.protect,
        policy.safety,
        graph=graph,
        held=held,
    )
    return plan, graph


async def _own_policy(registry: Registry, name: str) -> LifecyclePolicy | None:
    """`rules: ecr`: the repository's own lifecycle policy, validated like any other."""
    text = await registry.get_lifecycle_policy(name)
    return None if text is None else parse_policy_text(text, where=f"{name}: ECR lifecycle policy")


def settle(plan: Plan, outcome: Outcome) -> RepositoryReport:
    """Fold what applying did into the report.

    Images kept at delete time (re-verification) move from expire to keep with their
    reason. So does an image ECR refused because an index still references it: the registry
    is protecting a parent we keep, or one pushed since we planned; that is not a failure.
    """
    kept = dict(outcome.spared)
    referenced = (f.digest for f in outcome.failed if f.code == REFERENCED_BY_INDEX)
    kept.update(dict.fromkeys(referenced, REFERENCED_REASON))
    decisions = tuple(
        d._replace(verdict=Verdict.KEEP, reason=kept[d.image.digest], rule=None)
        if d.image.digest in kept
        else d
        for d in plan.decisions
    )
    return RepositoryReport(
        repository=plan.repository,
        plan=replace(plan, decisions=decisions),
        deleted=tuple(outcome.deleted),
        failed=tuple(f for f in outcome.failed if f.digest not in kept),
    )
