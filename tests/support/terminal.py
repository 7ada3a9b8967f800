"""A command on a real pseudo-terminal of a chosen size, driven from the test's event loop.

Python's `pty` gives the pair; the child sees a terminal on stdin, stdout and stderr (or
stdin from /dev/null), with the window size set through TIOCSWINSZ, so rich measures it as
it would a person's terminal. Reads happen in the event loop, so an in-process emulator
keeps answering while the test waits for a prompt.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import re
import struct
import sys
import termios
from collections.abc import Mapping, Sequence

# CSI (colours, cursor moves, erase), OSC (titles, links), and lone escapes rich may send.
_CONTROL = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[=>]")


def visible(raw: str) -> str:
    """What the terminal shows as text: control sequences removed, CRLF as LF."""
    return _CONTROL.sub("", raw).replace("\r\n", "\n")


def terminal_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a person's terminal: a real TERM, no width or colour overrides."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
    env.pop("FORCE_COLOR", None)
    env["TERM"] = "xterm-256color"
    env.update(extra or {})
    return env


class Terminal:
    def __init__(
        self,
        argv: Sequence[str],
        *,
        columns: int = 100,
        rows: int = 50,
        env: Mapping[str, str] | None = None,
        stdin_is_terminal: bool = True,
    ) -> None:
        self.argv, self.columns, self.rows = list(argv), columns, rows
        self.env = terminal_env(env)
        self.stdin_is_terminal = stdin_is_terminal
        self.raw = b""
        self.process: asyncio.subprocess.Process | None = None
        self._master = -1
        self._closed = asyncio.Event()
        self._changed = asyncio.Event()

    async def __aenter__(self) -> Terminal:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", self.rows, self.columns, 0, 0))
        self._master = master
        stdin = slave if self.stdin_is_terminal else asyncio.subprocess.DEVNULL
        self.process = await asyncio.create_subprocess_exec(
            *self.argv, stdin=stdin, stdout=slave, stderr=slave, env=self.env
        )
        os.close(slave)
        asyncio.get_running_loop().add_reader(master, self._read)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.process and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        self._stop_reading()
        os.close(self._master)

    def _read(self) -> None:
        try:
            chunk = os.read(self._master, 65536)
        except OSError:  # EIO: every process holding the terminal has closed it
            chunk = b""
        if not chunk:
            self._stop_reading()
            return
        self.raw += chunk
        self._changed.set()

    def _stop_reading(self) -> None:
        if not self._closed.is_set():
            asyncio.get_running_loop().remove_reader(self._master)
            self._closed.set()
            self._changed.set()

    @property
    def text(self) -> str:
        return visible(self.raw.decode(errors="replace"))

    async def expect(self, needle: str, seconds: float = 60) -> None:
        """Wait until the visible text holds `needle`."""
        async with asyncio.timeout(seconds):
            while needle not in self.text:
                if self._closed.is_set():
                    raise AssertionError(
                        f"{needle!r} never came; the terminal showed:\n{self.text}"
                    )
                self._changed.clear()
                await self._changed.wait()

    def type(self, keys: str) -> None:
        os.write(self._master, keys.encode())

    async def finish(self, seconds: float = 60) -> int:
        """Wait for the command to exit and its output to drain; its exit code."""
        assert self.process is not None
        async with asyncio.timeout(seconds):
            code = await self.process.wait()
            await self._closed.wait()
        return code


def cleaner(*args: str) -> list[str]:
    return [sys.executable, "-m", "cleaner", *args]
