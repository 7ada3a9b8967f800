"""The one use case: list, plan, and (unless dry-run) apply. CLI, receiver and CronJob call it.

Dry-run is not threaded through the deletes: a run plans every repository, and only when
`apply` is true does it hand the plan's expired digests to the registry.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from datetime import datetime

from cleaner.engine.apply import Applier, Outcome
from cleaner.engine.artifacts import ManifestCache, load_graph
from cleaner.errors import (
    CleanerError,
    ClusterError,
    ConfigError,
    InUseError,
    LeaseBusy,
    LeaseLost,
    RegistryError,
)
from cleaner.planning.graph import ArtifactGraph
from cleaner.planning.model import (
    Decision,
    ErrorKind,
    FailureKind,
    Plan,
    Repository,
    RepositoryReport,
    RunReport,
    Shard,
    Target,
    TargetFailure,
    Verdict,
    newest_first,
)
from cleaner.planning.planner import plan_repository
from cleaner.planning.policy_file import PolicyFile
from cleaner.planning.references import InUse, in_use_protection
from cleaner.ports import AuditSink, Coordinator, InUseSource, Registry

log = logging.getLogger(__name__)

DEFAULT_CONCURRENCY = 10
REFERENCED_REASON = "kept: the registry refused, an image index still references it"
NO_OWN_RULES = "kept: rules: ecr and the repository has no ECR lifecycle policy"


@dataclass(frozen=True, slots=True)
class SweepRequest:
    policy: PolicyFile
    now: datetime
    repositories: tuple[str, ...] = ()
    """Names to prune; empty means every repository the registry lists."""
    apply: bool = False
    """False is a dry run: plan and report, delete nothing."""
    concurrency: int = DEFAULT_CONCURRENCY
    """Most repositories in flight at once; each makes one registry call at a time."""
    shard: Shard | None = None
    """With no names given, only the repositories this shard owns."""
    approved: Mapping[str, frozenset[str]] | None = None
    """When set, the only digests each repository may lose: those a person confirmed from
    an earlier plan. An image the new plan expires beyond them is kept, with a reason."""
    keep_plans: bool = True
    """False: each repository's whole report goes to `Progress.on_repository_done` as it
    finishes, and the run's report keeps it without its plan (the outcome, deletions and
    failures stay). A run then holds only the repositories in flight, not the registry."""

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")


@dataclass(slots=True)
class Progress:
    """Callbacks for a progress display; all optional."""

    on_repositories: Callable[[int], None] = lambda total: None
    on_planned: Callable[[Plan], None] = lambda plan: None
    """A repository is planned (and its deletions, if any, come next)."""
    on_repository_done: Callable[[RepositoryReport], None] = lambda report: None
    on_deleted: Callable[[int, int], None] = lambda count, size: None
    """Images deleted (or found already gone) and their bytes."""

    def recording(self, record: Callable[[RepositoryReport], None]) -> Progress:
        """This progress, which also hands each finished repository to `record` first
        (a report writer, the sweep's metrics)."""
        shown = self.on_repository_done

        def done(report: RepositoryReport) -> None:
            record(report)
            shown(report)

        return replace(self, on_repository_done=done)


@dataclass(slots=True)
class Engine:
    """The one pruning engine; CLI, receiver and CronJob each hold one (`cleaner.wiring`).

    `cache` keeps parsed manifests across runs (they never change for a digest). With
    `in_use`, images a workload runs are held, and a source that cannot answer fails the
    repository closed. With `coordinator`, each prune that deletes holds the repository's
    lock, so receiver replicas and the CronJob never prune one repository at once.
    """

    registry: Registry
    cache: ManifestCache = field(default_factory=ManifestCache)
    in_use: InUseSource | None = None
    coordinator: Coordinator | None = None
    audit: AuditSink | None = None
    """Receives one record per deleted image (`sweep --audit-log FILE` appends them)."""
    target: Target = field(default_factory=Target)
    """Where the registry is: every repository report names it, shards hash it."""

    async def run(self, request: SweepRequest, progress: Progress | None = None) -> RunReport:
        """Prune every requested repository; one repository's failure never stops the others."""
        sweep = _Sweep(self, request, progress or Progress())
        return await sweep.run()


async def run_targets(
    runs: Sequence[tuple[Engine, SweepRequest]], progress: Progress | None = None
) -> RunReport:
    """Several targets at once, each through its own engine (its own registry client,
    rate limiter and concurrency); a target that fails is reported, the others go on."""
    reports = await asyncio.gather(*(engine.run(request, progress) for engine, request in runs))
    return RunReport.combine(dry_run=not any(r.apply for _, r in runs), reports=reports)


async def run(
    registry: Registry, request: SweepRequest, progress: Progress | None = None
) -> RunReport:
    """A one-off run with a fresh engine: no in-use source, no coordination."""
    return await Engine(registry).run(request, progress)


class _Sweep:
    """One run of the engine: what its repositories share, and how each is pruned."""

    def __init__(self, engine: Engine, request: SweepRequest, progress: Progress) -> None:
        self.engine, self.request, self.progress = engine, request, progress
        self.registry = engine.registry
        self.run_id = uuid.uuid4().hex[:12]
        self.in_use = failing_closed(engine.in_use) if engine.in_use else None
        self.applier = Applier(
            self.registry,
            self.run_id,
            in_use=self.in_use,
            audit=engine.audit,
            on_deleted=progress.on_deleted,
        )

    async def run(self) -> RunReport:
        log.info("run %s: %s", self.run_id, "apply" if self.request.apply else "dry run")
        try:
            names = await self._chosen_names()
        # The registry cannot even be listed (access denied, a region not enabled): this
        # target fails, and a run over several targets carries on with the others.
        except CleanerError as error:
            log.error("%s: %s", self.engine.target, error)
            failure = TargetFailure(self.engine.target, str(error))
            return RunReport(dry_run=not self.request.apply, failed_targets=(failure,))
        self.progress.on_repositories(len(names))
        slots = asyncio.Semaphore(self.request.concurrency)

        async def one(named: str | Repository) -> RepositoryReport:
            async with slots:
                report = await self._prune(named)
            self.progress.on_repository_done(report)
            return report if self.request.keep_plans else replace(report, plan=None)

        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(n)) for n in names]
        return RunReport(
            dry_run=not self.request.apply, repositories=tuple(t.result() for t in tasks)
        )

    async def _chosen_names(self) -> list[str | Repository]:
        """Named repositories (resolved inside their own task), or the listed ones this
        shard owns; either way only those a policy entry matches."""
        request = self.request
        listed: list[str | Repository] = list(request.repositories)
        if not listed:
            found = await self.registry.repositories()
            listed = [r for r in found if request.shard is None or request.shard.owns(self._key(r))]
        chosen = [t for t in listed if request.policy.entry_for(_name(t)) is not None]
        for skipped in sorted({_name(t) for t in listed} - {_name(t) for t in chosen}):
            log.info("%s: no policy entry matches; left alone", skipped)
        return chosen

    def _key(self, repository: Repository) -> str:
        """What a shard hashes: the account, region and name, so that one Indexed Job can
        split several accounts and regions; the name alone where the registry has neither."""
        account = self.engine.target.account or repository.registry_id
        parts = (account, self.engine.target.region, repository.name)
        return "/".join(part for part in parts if part)

    async def _prune(self, named: str | Repository) -> RepositoryReport:
        """One repository, reported with the target it is in."""
        resolved: list[Repository] = [named] if isinstance(named, Repository) else []
        report = await self._prune_one(named, resolved)
        target = self.engine.target
        account = target.account or (resolved[0].registry_id if resolved else "")
        return replace(report, account=account, region=target.region)

    async def _prune_one(
        self, named: str | Repository, resolved: list[Repository]
    ) -> RepositoryReport:
        name = _name(named)
        coordinator = self.engine.coordinator
        try:
            if not resolved:
                resolved.append(await self.registry.repository(name))
            # The Lease is per target and repository: `api` in two accounts are two locks.
            key = self._key(resolved[0])
            held = coordinator.hold(key) if coordinator and self.request.apply else nullcontext()
            async with held:
                return await self._plan_and_apply(resolved[0])
        # A registry or in-use source that cannot be read, a bad `rules: ecr` policy, a busy
        # or lost Lease: that repository fails, nothing more is deleted in it, the others
        # carry on.
        except CleanerError as error:
            log.error("%s: %s", name, error)
            return RepositoryReport(repository=name, error=str(error), error_kind=kind_of(error))
        # Anything else is a bug, but still this repository's: the run goes on and reports.
        except Exception as error:
            log.exception("%s: internal error", name)
            why = f"internal error: {error!r}"[:500]
            return RepositoryReport(repository=name, error=why, error_kind=ErrorKind.INTERNAL)

    async def _plan_and_apply(self, repository: Repository) -> RepositoryReport:
        name = repository.name
        plan, graph = await self._plan(repository)
        if self.request.approved is not None:
            plan = within_approved(plan, self.request.approved.get(name, frozenset()))
        self.progress.on_planned(plan)
        log.info("%s: %d images, %d to expire", name, len(plan.decisions), len(plan.expire))
        limit = self.request.policy.safety.max_deletions
        if limit is not None and len(plan.expire) > limit:
            # A brake, not a trim: cutting the list would delete an arbitrary subset.
            brake = f"max_deletions: {len(plan.expire)} planned, limit {limit}; nothing deleted"
            log.error("%s: %s", name, brake)
            return RepositoryReport(
                repository=name, plan=plan, error=brake, error_kind=ErrorKind.SAFETY
            )
        if not self.request.apply or not plan.expire:
            return RepositoryReport(repository=name, plan=plan)
        outcome = await self.applier.apply(repository, plan, graph)
        return report_applied(plan, outcome)

    async def _plan(self, repository: Repository) -> tuple[Plan, ArtifactGraph]:
        """List the repository, read its artifact links, and plan it with the entry's rules."""
        policy, registry = self.request.policy, self.registry
        entry = policy.entry_for(repository.name)
        assert entry is not None  # noqa: S101 - only matched names reach here
        images = await registry.images(repository)
        lifecycle = entry.lifecycle or await registry.own_rules(repository)
        graph = await load_graph(registry, repository, images, self.engine.cache)
        if lifecycle is None:
            kept = tuple(Decision(i, Verdict.KEEP, NO_OWN_RULES) for i in newest_first(images))
            return Plan(repository.name, kept), graph
        # Read the in-use set after the registry, as late as possible before deciding.
        in_use = await self.in_use() if self.in_use else None
        held = {}
        if in_use is not None:
            held = in_use_protection(repository, images, in_use, registry.matches)
        # In a worker thread: a large repository takes a second of CPU, and the receiver's
        # event loop must keep answering meanwhile.
        plan = await asyncio.to_thread(
            plan_repository,
            repository.name,
            images,
            lifecycle,
            self.request.now,
            policy.protect,
            policy.safety,
            graph=graph,
            held=held,
        )
        return plan, graph


def failing_closed(source: InUseSource) -> Callable[[], Awaitable[InUse]]:
    """The source's snapshot, any failure of it an InUseError (same message): a cluster
    that cannot be read reports as the in-use failure it is, not as a Lease problem."""

    async def snapshot() -> InUse:
        try:
            return await source.snapshot()
        except InUseError:
            raise
        except CleanerError as error:
            raise InUseError(str(error), source=getattr(source, "name", "")) from error

    return snapshot


def kind_of(error: CleanerError) -> ErrorKind:
    if isinstance(error, InUseError):
        return ErrorKind.IN_USE
    if isinstance(error, RegistryError):
        return ErrorKind.REGISTRY
    # In-use failures are InUseError by now (failing_closed): a ClusterError is the Lease's.
    if isinstance(error, LeaseBusy | LeaseLost | ClusterError):
        return ErrorKind.COORDINATION
    if isinstance(error, ConfigError):
        return ErrorKind.POLICY
    return ErrorKind.INTERNAL


NOT_APPROVED = "kept: not in the plan confirmed before the sweep"


def within_approved(plan: Plan, approved: frozenset[str]) -> Plan:
    """The plan, with every expired image that was not approved kept instead."""
    if all(d.image.digest in approved for d in plan.expire):
        return plan
    decisions = tuple(
        d._replace(verdict=Verdict.KEEP, reason=NOT_APPROVED, rule=None)
        if d.verdict is Verdict.EXPIRE and d.image.digest not in approved
        else d
        for d in plan.decisions
    )
    return replace(plan, decisions=decisions)


def _name(target: str | Repository) -> str:
    return target if isinstance(target, str) else target.name


def report_applied(plan: Plan, outcome: Outcome) -> RepositoryReport:
    """Fold what applying did into the report.

    Images kept at delete time (re-verification) move from expire to keep with their
    reason. So does an image the registry refused because an index still references it: it
    is protecting a parent we keep, or one pushed since we planned; that is not a failure.
    """
    kept = dict(outcome.spared)
    referenced = (f.digest for f in outcome.failed if f.kind is FailureKind.REFERENCED)
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
