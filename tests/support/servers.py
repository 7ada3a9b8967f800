"""Programs from Debian's packages that tests run: found or the test fails naming the
package (never a silent skip), and servers started on a loopback port until they answer;
and the tests' own aiohttp servers on a loopback port."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import pytest
from aiohttp import web


def debian_binary(name: str, package: str, *, search: str | None = None) -> str:
    """`name` on PATH (else in /usr/sbin or /usr/bin), or `search` alone when given."""
    found = (
        shutil.which(name, path=search)
        if search is not None
        else shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    )
    if found is None:
        pytest.fail(
            f"{name} is not installed: install Debian package {package} (apt-get install {package})"
        )
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def serving(
    command: Sequence[str], ready_url: str, *, within_s: float = 15.0, stop_s: float = 15.0
) -> Iterator[None]:
    """Run `command` until the body ends, once `ready_url` answers; it fails the test,
    with the end of its stderr, if it exits or stays silent first."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_ready(ready_url, process, command[0], within_s)
        yield
    finally:
        process.terminate()
        process.wait(timeout=stop_s)
        if process.stderr:
            process.stderr.close()


def _wait_ready(url: str, process: subprocess.Popen[bytes], name: str, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            errors = process.stderr.read().decode() if process.stderr else ""
            pytest.fail(f"{name} exited with {process.returncode}: {errors[-500:]}")
        try:
            with urllib.request.urlopen(url, timeout=1):  # noqa: S310 - loopback
                return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"{name} did not answer {url} within {within_s:g} s")


@asynccontextmanager
async def loopback(app: web.Application, **runner: Any) -> AsyncIterator[str]:
    """Serve `app` on a free loopback port for the body; yields its base URL.
    `runner`: AppRunner options (`shutdown_timeout`, `access_log`, ...)."""
    served = web.AppRunner(app, handle_signals=False, **runner)
    await served.setup()
    try:
        await web.TCPSite(served, "127.0.0.1", 0).start()
        host, port = served.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await served.cleanup()
