"""Progress on stderr for `plan` and `sweep`, only when stderr is a terminal (rich draws it).

One line for planning (repositories, images, bytes to reclaim, ETA) and, for a sweep that
deletes, one for deleting (images, bytes reclaimed, ETA). While the bar is up, log lines
go through the same console (`logs.logs_through`), above the bar instead of across it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from cleaner.engine import Progress as EngineProgress
from cleaner.logs import logs_through
from cleaner.planning.model import Plan, RepositoryReport
from cleaner.planning.units import format_bytes

COLUMNS = (
    TextColumn("{task.description:<8}"),
    BarColumn(bar_width=24),
    MofNCompleteColumn(),
    TextColumn("{task.fields[what]}"),
    TimeRemainingColumn(),
    TimeElapsedColumn(),
)


@contextmanager
def terminal_progress(*, apply: bool, enabled: bool = True) -> Iterator[EngineProgress]:
    """Engine callbacks that draw the progress, or do nothing off a terminal."""
    if not (enabled and sys.stderr.isatty()):
        yield EngineProgress()
        return
    console = Console(stderr=True)
    # Handlers first: once the bar is up, sys.stderr is rich's proxy, not the handler's stream.
    with logs_through(console), Progress(*COLUMNS, console=console, transient=True) as bar:
        yield _Display(bar, apply).callbacks()


class _Display:
    """What the bar shows, updated from the engine's callbacks."""

    def __init__(self, bar: Progress, apply: bool) -> None:
        self.bar, self.apply = bar, apply
        self.images = self.expire = self.expire_bytes = 0
        self.deleted = self.deleted_bytes = self.repositories = 0
        stage = "sweeping" if apply else "planning"
        self.planning = bar.add_task(stage, total=None, what="repositories")
        self.deleting: TaskID | None = None
        if apply:
            self.deleting = bar.add_task("deleting", total=0, what="images", start=False)

    def callbacks(self) -> EngineProgress:
        return EngineProgress(
            on_repositories=self.listed,
            on_planned=self.planned,
            on_repository_done=self.done,
            on_deleted=self.deleted_some,
        )

    def listed(self, count: int) -> None:
        """Once per target: the totals of several targets add up."""
        self.repositories += count
        self.bar.update(self.planning, total=self.repositories)

    def planned(self, plan: Plan) -> None:
        expire = plan.expire
        self.images += len(plan.decisions)
        self.expire += len(expire)
        self.expire_bytes += sum(d.image.size for d in expire)
        what = (
            f"repositories, {self.images} images, "
            f"{format_bytes(self.expire_bytes)} {'to delete' if self.apply else 'reclaimable'}"
        )
        self.bar.update(self.planning, what=what)
        if self.deleting is not None:
            self.bar.update(self.deleting, total=self.expire)

    def done(self, report: RepositoryReport) -> None:
        self.bar.advance(self.planning)

    def deleted_some(self, count: int, size: int) -> None:
        if self.deleting is None:
            return
        self.deleted += count
        self.deleted_bytes += size
        self.bar.start_task(self.deleting)
        what = f"images, {format_bytes(self.deleted_bytes)} reclaimed"
        self.bar.update(self.deleting, completed=self.deleted, what=what)
