"""Progress on stderr for long sweeps, only when stderr is a terminal (rich draws it)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cleaner.engine import Progress as EngineProgress


@contextmanager
def terminal_progress(*, enabled: bool = True) -> Iterator[EngineProgress]:
    if not (enabled and sys.stderr.isatty()):
        yield EngineProgress()
        return
    console = Console(stderr=True)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[deleted]} deleted"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("repositories", total=None, deleted=0)
        deleted = listed = 0

        def add_listed(count: int) -> None:  # once per target
            nonlocal listed
            listed += count
            bar.update(task, total=listed)

        def add_deleted(count: int) -> None:
            nonlocal deleted
            deleted += count
            bar.update(task, deleted=deleted)

        yield EngineProgress(
            on_repositories=add_listed,
            on_repository_done=lambda report: bar.advance(task),
            on_deleted=add_deleted,
        )
