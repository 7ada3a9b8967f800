"""Asking a person at a terminal before a sweep deletes anything.

Asked only when both stdin and stderr are terminals: a CronJob, a CI step or a pipe never
waits for an answer. The answer is read without a thread (the event loop watches stdin),
so Ctrl-C or a closed terminal ends the wait at once, and nothing else stops meanwhile.
"""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import datetime
from typing import TextIO

from cleaner.planning.model import RunReport
from cleaner.planning.units import format_bytes
from cleaner.reports.figures import run_figures
from cleaner.reports.text import summary_parts, text_console

YES = frozenset({"y", "yes"})


def can_ask(stdin: TextIO = sys.stdin, stderr: TextIO = sys.stderr) -> bool:
    return stdin.isatty() and stderr.isatty()


async def confirm_plan(plan: RunReport, now: datetime, stderr: TextIO = sys.stderr) -> bool:
    """Show the plan's summary and pictures on stderr and ask whether to delete."""
    figures = run_figures(True, now, plan.repositories)
    console = text_console(stderr)
    for part in summary_parts(figures):
        console.print(part)
    going = [row for row in figures.rows if row.expire and not row.error]
    images, size = sum(row.expire for row in going), sum(row.expire_bytes for row in going)
    where = "1 repository" if len(going) == 1 else f"{len(going)} repositories"
    return await confirm(f"Delete {images} images ({format_bytes(size)}) from {where}?")


def deletes_anything(plan: RunReport) -> bool:
    return any(r.plan and r.plan.expire and not r.error for r in plan.repositories)


def approved(plan: RunReport) -> dict[str, frozenset[str]]:
    """The digests a person saw and said yes to, per repository."""
    return {
        r.repository: frozenset(d.image.digest for d in r.plan.expire)
        for r in plan.repositories
        if r.plan and not r.error
    }


async def confirm(question: str, stdin: TextIO = sys.stdin, stderr: TextIO = sys.stderr) -> bool:
    """Ask `question` on stderr; True only for "y" or "yes" (end of input is a no)."""
    stderr.write(f"{question} [y/N] ")
    stderr.flush()
    line = await _read_line(stdin.fileno())
    if not line.endswith(b"\n"):  # end of input, not an answer: end the prompt's line
        stderr.write("\n")
    return line.decode(errors="replace").strip().lower() in YES


async def _read_line(fd: int) -> bytes:
    """One line from a terminal in canonical mode (a read returns when Enter is pressed)."""
    loop = asyncio.get_running_loop()
    answered: asyncio.Future[bytes] = loop.create_future()

    def readable() -> None:
        if not answered.done():
            answered.set_result(os.read(fd, 4096))

    loop.add_reader(fd, readable)
    try:
        return await answered
    finally:
        loop.remove_reader(fd)
