"""The receiver's app under pytest-aiohttp's test client, but on the production runner.

aiohttp's TestServer builds a plain AppRunner, which would inflate gzip bodies, log query
strings and let aiohttp's parser errors quote the request; `ReceiverRunner` does none of
that, so the hostile-input tests must meet it, not a stand-in.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from cleaner.receiver.runner import ReceiverRunner


class ReceiverTestServer(TestServer):
    async def _make_runner(self, **kwargs: Any) -> web.AppRunner:
        # TestServer asks for handler cancellation, so that a test's vanished client does
        # not leave its handler lingering past the test.
        cancel = bool(kwargs.get("handler_cancellation", False))
        return ReceiverRunner(self.app, handler_cancellation=cancel)
