"""The receiver process's lifetime: listen, then on SIGTERM (or SIGINT) drain and stop.

SIGTERM fails readiness, refuses new work with 503, lets running prunes finish within
--drain-timeout, then closes the listener. What runs inside is built by `cleaner.wiring`.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from aiohttp import web

from cleaner.errors import ConfigError
from cleaner.receiver.http import drain
from cleaner.receiver.runner import ReceiverRunner

log = logging.getLogger(__name__)


async def serve_app(
    app: web.Application,
    host: str,
    port: int,
    *,
    on_started: Callable[[str], None] | None = None,
) -> None:
    runner = ReceiverRunner(app)
    await runner.setup()
    try:
        async with _stop_signals() as stop:
            url = await _listen(runner, host, port)
            log.info("serving on %s", url, extra={"url": url})
            if on_started is not None:
                on_started(url)
            received = await stop
            log.info("%s: draining", received.name, extra={"signal": received.name})
            await drain(app)
    finally:
        await runner.cleanup()
    log.info("stopped")


async def _listen(runner: web.AppRunner, host: str, port: int) -> str:
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as error:
        raise ConfigError(f"cannot listen on {host}:{port}: {error.strerror or error}") from error
    bound_host, bound_port = runner.addresses[0][:2]
    return f"http://{f'[{bound_host}]' if ':' in bound_host else bound_host}:{bound_port}"


@asynccontextmanager
async def _stop_signals() -> AsyncIterator[asyncio.Future[signal.Signals]]:
    """A future that SIGTERM or SIGINT resolves; the handlers stay until the drain ends,
    so a second signal cannot kill the process halfway through a deletion."""
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[signal.Signals] = loop.create_future()

    def received(sig: signal.Signals) -> None:
        if stop.done():
            log.info("%s: already draining", sig.name)
        else:
            stop.set_result(sig)

    wanted = (signal.SIGTERM, signal.SIGINT)
    for sig in wanted:
        loop.add_signal_handler(sig, received, sig)
    try:
        yield stop
    finally:
        for sig in wanted:
            loop.remove_signal_handler(sig)
