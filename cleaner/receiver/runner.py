"""How the receiver's aiohttp server is run: what it refuses before the application sees a
request, and what it writes about each one.

Three defaults of aiohttp's server do not suit an endpoint that must stay cheap for
strangers and must never show its token:
- it decompresses a gzip or deflate body as it arrives, before any handler runs, so an
  unauthenticated 250 KB body that inflates to 250 MiB costs half a second of CPU. Here
  bodies stay as sent (`auto_decompress=False`), and the handlers refuse any
  Content-Encoding with 415: EventBridge sends plain JSON;
- its access log writes the request line, query string included, so a token sent as
  `?token=...` lands in the log. Here the log line has the path only;
- a request its HTTP parser rejects is answered by aiohttp itself, with the parser's
  message as the body, and that message quotes the offending header line (a NUL in an
  `X-Api-Key` line quotes the key). aiohttp offers no hook for these answers
  (https://github.com/aio-libs/aiohttp/issues/3287), so `ReceiverRunner` builds its server
  with a request handler that answers with the status phrase alone.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

HANDLER_SHUTDOWN_S = 5.0  # after the drain, requests still open get this long
KEEPALIVE_TIMEOUT_S = 75.0
"""aiohttp's default keeps an idle or half-sent connection for an hour; EventBridge closes
after each request anyway, so a short idle limit costs nothing."""
LINGERING_S = 2.0
"""After answering a request whose body it did not read (a 401, a 415), aiohttp reads and
drops the rest for this long before closing, so the client sees the answer rather than a
reset. Its default of 10 s would let a slow stranger hold a handler that long."""


class PathOnlyAccessLogger(AbstractAccessLogger):
    """`remote "METHOD /path" status bytes seconds`: never the query string."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            '%s "%s %s" %s %s %.3fs',
            request.remote,
            request.method,
            request.path,
            response.status,
            response.body_length,
            time,
            extra={"path": request.path, "status": response.status},
        )


class _PhraseOnlyErrors(web.RequestHandler):
    """Answers the requests aiohttp's parser rejects with the status phrase alone."""

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        return super().handle_error(request, status, exc, HTTPStatus(status).phrase)


class _Server(web.Server):
    def __call__(self) -> web.RequestHandler:
        return _PhraseOnlyErrors(self, loop=self._loop, **self._kwargs)


def handler_options() -> dict[str, Any]:
    """The request-handler options, for this runner and for tests' own test servers."""
    return {
        "auto_decompress": False,
        "access_log_class": PathOnlyAccessLogger,
        "keepalive_timeout": KEEPALIVE_TIMEOUT_S,
        "lingering_time": LINGERING_S,
    }


class ReceiverRunner(web.AppRunner):
    """An AppRunner whose server answers parser errors without quoting the request."""

    def __init__(self, app: web.Application, *, handler_cancellation: bool = False) -> None:
        super().__init__(
            app, handle_signals=False, shutdown_timeout=HANDLER_SHUTDOWN_S, **handler_options()
        )
        self._cancel_on_disconnect = handler_cancellation

    async def _make_server(self) -> web.Server:
        made = await super()._make_server()  # starts the application (cleanup_ctx, ...)
        return _Server(
            made.request_handler,
            request_factory=made.request_factory,
            handler_cancellation=self._cancel_on_disconnect,
            debug=False,
            **handler_options(),
        )
