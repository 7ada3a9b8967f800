"""Several in-use sources as one: every member must answer, or nobody prunes.

The engine holds a single `InUseSource`. With Kubernetes and, say, ECS configured, an image
either platform runs is in use; a member that cannot tell (unreachable, access denied,
not synced) makes the whole snapshot fail, because a partial view would delete what the
silent member runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from cleaner.errors import CleanerError, InUseError
from cleaner.planning.references import InUse
from cleaner.ports import InUseSource


class MergedInUse:
    """The union of its members' snapshots, asked concurrently."""

    def __init__(self, sources: Sequence[InUseSource]) -> None:
        if not sources:
            raise ValueError("a merged source needs at least one member")
        self.sources = tuple(sources)
        self.name = "+".join(s.name for s in self.sources)

    async def snapshot(self) -> InUse:
        results = await asyncio.gather(
            *(s.snapshot() for s in self.sources), return_exceptions=True
        )
        for source, result in zip(self.sources, results, strict=True):
            if isinstance(result, InUseError) and result.source == source.name:
                raise result  # it already names itself
            if isinstance(result, CleanerError):
                message = f"in-use source {source.name}: {result}"
                raise InUseError(message, source=source.name) from result
            if isinstance(result, BaseException):
                raise result
        return InUse.merge(r for r in results if isinstance(r, InUse))


def merged(sources: Sequence[InUseSource | None]) -> InUseSource | None:
    """One source for the engine: None without members, the member itself when alone."""
    present = [s for s in sources if s is not None]
    if not present:
        return None
    return present[0] if len(present) == 1 else MergedInUse(present)
