"""Applying a plan: re-verify, delete in parent-first waves, audit every deletion.

A plan is a snapshot; deletes are irreversible. So just before each batch the planned
digests are read again, and any whose tags changed since planning (a tag moved onto an image
planned as untagged), or that a cluster started using, or whose parent was spared, are kept
instead, each with its reason. Each batch is recorded ahead of the call and after it
(`records.py`): one structured log line each and, with an audit sink, one JSON record each.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cleaner.engine.records import deleted_record, image_fields, intent_record, not_deleted_record
from cleaner.errors import CleanerError
from cleaner.planning.graph import ArtifactGraph, deletion_waves
from cleaner.planning.model import (
    Decision,
    DeleteFailure,
    DeleteResult,
    FailureKind,
    Image,
    Plan,
    Repository,
)
from cleaner.planning.references import InUse, in_use_protection
from cleaner.ports import AuditSink, Registry

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Outcome:
    """What applying did: deleted, failed, and images kept at delete time with a reason."""

    deleted: list[str] = field(default_factory=list)
    failed: list[DeleteFailure] = field(default_factory=list)
    spared: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Applier:
    registry: Registry
    run_id: str
    in_use: Callable[[], Awaitable[InUse]] | None = None
    """Returns an awaitable InUse (the engine's source), re-read before every batch."""
    audit: AuditSink | None = None
    on_deleted: Callable[[int, int], None] = lambda count, size: None
    """Images deleted (or found already gone) and their bytes."""

    async def apply(self, repository: Repository, plan: Plan, graph: ArtifactGraph) -> Outcome:
        """Delete the plan's expired images in waves (parents first), oldest first, a batch
        (the registry's `batch_limit`) a call.

        A repository's batches go one after another (repositories run concurrently): the
        order stays meaningful, an interrupted sweep has removed the oldest images, and a
        server that is not safe under concurrent deletes in one repository (moto is not)
        still ends in the planned state.
        """
        planned = {d.image.digest: d for d in plan.expire}
        oldest_first = [d.image.digest for d in reversed(plan.expire)]
        rank = {digest: i for i, digest in enumerate(oldest_first)}
        outcome = Outcome()
        for wave in deletion_waves(oldest_first, graph):
            wave.sort(key=rank.__getitem__)
            size = self.registry.batch_limit
            for start in range(0, len(wave), size):
                batch = [planned[d] for d in wave[start : start + size]]
                await self._batch(repository, batch, graph, outcome)
        return outcome

    async def _batch(
        self, repository: Repository, batch: list[Decision], graph: ArtifactGraph, outcome: Outcome
    ) -> None:
        digests = [d.image.digest for d in batch]
        try:
            current = await self.registry.recheck(repository, digests)
        except CleanerError as error:  # cannot re-verify: do not delete blind
            outcome.failed.extend(_failures(batch, error))
            return
        in_use = await self.in_use() if self.in_use else None
        go, gone = self._recheck(repository, batch, current, in_use, graph, outcome.spared)
        outcome.deleted.extend(gone)  # already gone: the state the plan wanted
        if gone:
            sizes = {d.image.digest: d.image.size for d in batch}
            self.on_deleted(len(gone), sum(sizes[digest] for digest in gone))
        if not go:
            return
        self._intend(repository.name, go)
        try:
            result = await self.registry.delete(repository, [d.image.digest for d in go])
        except CleanerError as error:  # the whole batch failed: data for the report, keep going
            outcome.failed.extend(self._unanswered(repository.name, go, error))
            return
        self._record(repository.name, {d.image.digest: d for d in go}, result)
        outcome.deleted.extend(result.deleted)
        outcome.failed.extend(result.failed)

    def _intend(self, name: str, batch: Sequence[Decision]) -> None:
        """Write the intent ahead of the call (see `records.py`): a batch the registry
        applies is on record even if its answer never arrives."""
        record = intent_record(name, batch, self.run_id, datetime.now(UTC))
        log.info("deleting %d images from %s", len(batch), name, extra={"audit": record})
        if self.audit:
            self.audit(record)

    def _record(self, name: str, decisions: Mapping[str, Decision], result: DeleteResult) -> None:
        now = datetime.now(UTC)
        for digest in result.deleted:
            record = deleted_record(name, image_fields(decisions[digest]), self.run_id, now)
            log.info(
                "deleted %s@%s tags=%s: %s",
                name,
                digest,
                ",".join(record["tags"]) or "-",
                record["reason"],
                extra={"audit": record},
            )
            if self.audit:
                self.audit(record)
        for failure in result.failed:
            record = not_deleted_record(name, failure, self.run_id, now)
            level = logging.INFO if failure.kind is FailureKind.REFERENCED else logging.WARNING
            log.log(level, "%s@%s not deleted: %s %s", name, failure.digest, failure.code,
                    failure.message, extra={"audit": record})  # fmt: skip
            if self.audit:
                self.audit(record)
        size = sum(decisions[d].image.size for d in result.deleted if d in decisions)
        self.on_deleted(len(result.deleted), size)

    def _unanswered(
        self, name: str, batch: Sequence[Decision], error: CleanerError
    ) -> list[DeleteFailure]:
        """The call failed without a per-image answer: the registry may have acted before
        the connection broke, so no outcome is recorded; the intent stays open for the next
        run to reconcile against the registry."""
        log.error("%s: delete failed, outcome unknown until reconciled: %s", name, error)
        code = getattr(error, "code", "") or "Error"
        return [DeleteFailure(d.image.digest, code, str(error)) for d in batch]

    def _recheck(
        self,
        repository: Repository,
        batch: Sequence[Decision],
        current: Mapping[str, Image],
        in_use: InUse | None,
        graph: ArtifactGraph,
        spared: dict[str, str],
    ) -> tuple[list[Decision], list[str]]:
        """Split a batch into what may still go and what is already gone; record what is
        spared."""
        now_used: Mapping[str, str] = {}
        if in_use is not None:
            images = list(current.values())
            now_used = in_use_protection(repository, images, in_use, self.registry.matches)
        go: list[Decision] = []
        gone: list[str] = []
        for decision in batch:
            digest = decision.image.digest
            image = current.get(digest)
            why = _spare_reason(decision, image, now_used, graph, spared)
            if image is None:
                gone.append(digest)
            elif why:
                spared[digest] = why
                log.warning("%s@%s kept at delete time: %s", repository.name, digest, why)
            else:
                go.append(decision)
        return go, gone


def _spare_reason(
    decision: Decision,
    image: Image | None,
    now_used: Mapping[str, str],
    graph: ArtifactGraph,
    spared: Mapping[str, str],
) -> str | None:
    if image is None:
        return None
    if set(image.tags) != set(decision.image.tags):
        now = ",".join(image.tags) or "untagged"
        return f"kept: tags changed since planning (now {now})"
    if image.digest in now_used:
        return f"kept: {now_used[image.digest]} (since planning)"
    kept_parent = next((p for p in graph.parents(image.digest) if p in spared), None)
    if kept_parent:
        return f"kept: its parent {kept_parent[:19]} was kept at delete time"
    return None


def _failures(batch: Sequence[Decision], error: CleanerError) -> list[DeleteFailure]:
    code = getattr(error, "code", "") or "Error"
    message = f"not deleted, could not re-verify: {error}"
    return [DeleteFailure(d.image.digest, code, message) for d in batch]
