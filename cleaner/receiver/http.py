"""The HTTP edge: `make_app(deps)` builds the aiohttp application.

Handlers parse, call and serialise; errors become JSON answers in one middleware. Push events
go to the intake and are answered at once (EventBridge waits at most 5 s); the scheduler
prunes in the background, and this module owns it for the app's lifetime (`cleanup_ctx`).
Other ways in (`Deps.edges`: a queue consumer) share that intake and scheduler: they start
with the app and stop first when it drains.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler

from cleaner.errors import BacklogFull, InvalidRequest, Rejected
from cleaner.planning.model import iso_utc
from cleaner.planning.names import is_repository_name
from cleaner.ports import Intake, Status
from cleaner.receiver.auth import TokenAuth
from cleaner.receiver.events import Scope, parse_prune_request
from cleaner.receiver.intake import EventIntake
from cleaner.receiver.metrics import InstrumentedPruner, Metrics
from cleaner.receiver.openapi import openapi_document
from cleaner.receiver.routes import Route, Router
from cleaner.receiver.scheduler import Job, JobState, Pruner, Scheduler, SchedulerSettings
from cleaner.reports.json import report_to_json

log = logging.getLogger(__name__)

MAX_BODY = 256 * 1024  # EventBridge's own limit on an event's size, so no real event is refused
BODY_TIMEOUT_S = 10.0
"""The whole body must arrive within this time after the headers (EventBridge sends it at once);
a stalled client then gets 408 instead of holding a handler forever. Read at request time."""
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json"})
EVENTS_PATH = "/events"
# Headers an HTTP error keeps when it becomes a JSON answer (Content-Type is replaced).
KEPT_ERROR_HEADERS = ("Allow", "Retry-After", "WWW-Authenticate")


@dataclass(frozen=True, slots=True)
class Deps:
    """Everything the app needs, built by the caller (serve.py, tests)."""

    pruner: Pruner
    auth: TokenAuth
    scope: Scope = field(default_factory=Scope)
    schedule: SchedulerSettings = field(default_factory=SchedulerSettings)
    drain_timeout_s: float = 25.0
    """In-flight prunes get this long at shutdown; below Kubernetes' 30 s grace period."""
    metrics: Metrics = field(default_factory=Metrics)
    readiness: tuple[ReadinessCheck, ...] = ()
    """More reasons not to be ready (the registry unreachable, say), asked on /readyz."""
    covers: Callable[[str], bool] = lambda repository: True
    """Does a policy entry match the repository? A push to one that no entry matches is
    answered 200 "ignored" and takes no backlog room."""
    routes: tuple[Route, ...] = ()
    """Several targets' scopes (`cleaner.receiver.routes`); () = the one `scope`."""
    edges: tuple[Edge, ...] = ()
    """Ways in besides POST /events, run for the app's lifetime; each one's readiness is
    asked on /readyz too."""


class Edge(Protocol):
    """An ingress that hands deliveries to the app's intake (a queue consumer).

    `start` runs before the app is ready (an error there stops the start); when the app
    drains, `stop` ends intake before the scheduler closes, and `finish` settles what the
    edge took once the scheduler has closed. `stop` and `finish` may be called again.
    """

    async def start(self, intake: Intake) -> None: ...

    async def stop(self) -> None: ...

    async def finish(self) -> None: ...

    async def readiness(self) -> str | None:
        """None when the edge works, else why not."""
        ...


ReadinessCheck = Callable[[], Awaitable[str | None]]
"""None when ready, else why not; each check bounds and caches its own cost."""


class Phase(enum.StrEnum):
    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"


@dataclass(slots=True)
class Runtime:
    scheduler: Scheduler
    intake: EventIntake
    phase: Phase = Phase.STARTING


class JobUnfinished(Exception):
    """A waited-for job ended without a report: it raised (502) or was cancelled (503)."""

    def __init__(self, job: Job) -> None:
        super().__init__(job.error or f"job {job.id} was {job.state.value}")
        self.job = job


DEPS = web.AppKey("deps", Deps)
RUNTIME = web.AppKey("runtime", Runtime)


class _NoRawRequestBytes(logging.Filter):
    """aiohttp logs a malformed request with a traceback quoting the offending raw bytes, and
    a broken `Authorization` or `X-Api-Key` line holds the token: log the error's kind only."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError):
            record.msg = "malformed HTTP request: %s (%s)"
            record.args = (type(error).__name__, error.code)
            record.exc_info = record.exc_text = None
        return True


_PARSER_ERRORS = _NoRawRequestBytes()


def make_app(deps: Deps) -> web.Application:
    logging.getLogger("aiohttp.server").addFilter(_PARSER_ERRORS)  # once: filters are a set
    pruner = InstrumentedPruner(deps.pruner, deps.metrics)
    scheduler = Scheduler(pruner, deps.schedule, on_retry=deps.metrics.count_retry)
    deps.metrics.watch(lambda: scheduler.depth, lambda: scheduler.running)
    app = web.Application(client_max_size=MAX_BODY, middlewares=[_json_errors, _authenticate])
    app[DEPS] = deps
    routes = deps.routes or (Route(deps.scope, deps.covers),)
    router = Router(routes, on_unrouted=deps.metrics.count_unrouted)
    app[RUNTIME] = Runtime(scheduler, EventIntake(scheduler, deps.scope, router=router))
    app.cleanup_ctx.append(_lifetime)
    # `[\s\S]+`, not `.+`: a name with a newline must reach the handler and get its 400,
    # not fall through to a 404.
    paths = [
        web.post(EVENTS_PATH, post_events),
        web.post("/prune", post_prune),
        web.get("/jobs/{id}", get_job, allow_head=False),
        web.get(r"/repositories/{name:[\s\S]+}/plan", get_plan, allow_head=False),
        web.get("/healthz", healthz, allow_head=False),
        web.get("/readyz", readyz, allow_head=False),
        web.get("/metrics", metrics, allow_head=False),
        web.get("/openapi.json", openapi, allow_head=False),
    ]
    app.add_routes(paths)
    return app


async def drain(app: web.Application) -> None:
    """Fail readiness, stop the other edges taking work, refuse new work, let running
    prunes finish (bounded), then let the edges settle what they took. Idempotent."""
    runtime, deps = app[RUNTIME], app[DEPS]
    runtime.phase = Phase.DRAINING
    for edge in deps.edges:
        await edge.stop()
    await runtime.scheduler.close(deps.drain_timeout_s)
    for edge in deps.edges:
        await edge.finish()


async def _lifetime(app: web.Application) -> AsyncIterator[None]:
    runtime, started = app[RUNTIME], []
    try:
        for edge in app[DEPS].edges:
            await edge.start(runtime.intake)
            started.append(edge)
    except BaseException:
        for edge in reversed(started):
            await edge.stop()
            await edge.finish()
        raise
    runtime.phase = Phase.READY
    yield
    await drain(app)


# --- middlewares -------------------------------------------------------------------------


@web.middleware
async def _json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The one place where failures become HTTP answers."""
    try:
        return await handler(request)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        kept = {k: error.headers[k] for k in KEPT_ERROR_HEADERS if k in error.headers}
        return _error(error.status, error.text or error.reason, kept)
    except InvalidRequest as error:
        return _error(400, str(error))
    except Rejected as error:
        status = 429 if isinstance(error, BacklogFull) else 503
        return _error(status, str(error), {"Retry-After": str(error.retry_after)})
    except JobUnfinished as error:
        if error.job.state is JobState.CANCELLED:
            retry_after = str(request.app[DEPS].schedule.retry_after_s)
            return _error(503, str(error), {"Retry-After": retry_after})
        return _error(502, str(error))
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _error(500, "internal error")


@web.middleware
async def _authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Everything but the probes, metrics and the API description needs the token."""
    deps = request.app[DEPS]
    if request.path not in PUBLIC_PATHS and not deps.auth.allows(request.headers):
        if request.path == EVENTS_PATH:
            deps.metrics.count_event("unauthorized")
        raise web.HTTPUnauthorized(
            text="missing or wrong token",
            headers={"WWW-Authenticate": 'Bearer realm="ecr-cleaner"'},
        )
    return await handler(request)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


# --- handlers ----------------------------------------------------------------------------


async def post_events(request: web.Request) -> web.Response:
    deps, intake = request.app[DEPS], request.app[RUNTIME].intake
    try:
        answer = intake.submit(await read_body(request))
    except (web.HTTPClientError, InvalidRequest, Rejected) as error:
        deps.metrics.count_event(_failure_status(error))
        raise
    deps.metrics.count_event(answer.status)
    deps.metrics.time_to_pruned(answer)
    body = {"status": answer.status.value, "id": answer.id}
    if answer.reason is not None:
        body["reason"] = answer.reason
    if answer.repository is not None:
        body["repository"] = answer.repository
    accepted = answer.status in (Status.ACCEPTED, Status.COALESCED)
    return web.json_response(body, status=202 if accepted else 200)


def _failure_status(error: Exception) -> str:
    if isinstance(error, web.HTTPRequestEntityTooLarge):
        return "too_large"
    if isinstance(error, web.HTTPRequestTimeout):
        return "timeout"
    if isinstance(error, web.HTTPUnsupportedMediaType):
        return "invalid"
    if isinstance(error, InvalidRequest):
        return "invalid"
    return "throttled" if isinstance(error, BacklogFull) else "unavailable"


async def post_prune(request: web.Request) -> web.Response:
    wanted = parse_prune_request(await read_body(request))
    job = request.app[RUNTIME].scheduler.submit_job(wanted.repositories, dry_run=wanted.dry_run)
    if not wanted.wait:
        location = {"Location": f"/jobs/{job.id}"}
        return web.json_response(job_to_json(job), status=202, headers=location)
    return await _report_when_done(job)


PLAIN_ENCODINGS = frozenset({"", "identity"})


async def read_body(request: web.Request) -> bytes:
    """The whole body (at most MAX_BODY: 413), within BODY_TIMEOUT_S (408), as sent: a
    compressed body is refused unread (415), since the server does not inflate bodies
    (`runner.py`) and EventBridge never compresses; broken chunking is a 400."""
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in PLAIN_ENCODINGS:
        raise web.HTTPUnsupportedMediaType(
            text=f"Content-Encoding {encoding[:20]!r} is not accepted: send the JSON as is"
        )
    try:
        async with asyncio.timeout(BODY_TIMEOUT_S):
            return await request.read()
    except TimeoutError:
        raise web.HTTPRequestTimeout(
            text=f"the body did not arrive within {BODY_TIMEOUT_S:g} s"
        ) from None
    except web.RequestPayloadError as error:
        raise InvalidRequest("the body could not be read (broken chunked encoding)") from error


async def get_plan(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if not is_repository_name(name):
        raise InvalidRequest(f"not a valid repository name: {name[:80]!r}")
    job = request.app[RUNTIME].scheduler.submit_job((name,), dry_run=True)
    return await _report_when_done(job)


async def _report_when_done(job: Job) -> web.Response:
    await job.wait()
    if job.report is None:
        raise JobUnfinished(job)
    return web.json_response(report_to_json(job.report))


async def get_job(request: web.Request) -> web.Response:
    job = request.app[RUNTIME].scheduler.job(request.match_info["id"])
    if job is None:
        raise web.HTTPNotFound(text="no such job")
    return web.json_response(job_to_json(job))


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    answer = await _readiness(request)
    request.app[DEPS].metrics.ready.set(1 if answer.status == 200 else 0)
    return answer


async def _readiness(request: web.Request) -> web.Response:
    phase = request.app[RUNTIME].phase
    if phase is not Phase.READY:
        return web.json_response({"status": phase.value}, status=503)
    deps = request.app[DEPS]
    checks = [*deps.readiness, *(edge.readiness for edge in deps.edges)]
    reasons = [why for check in checks if (why := await check()) is not None]
    if reasons:
        return web.json_response({"status": "not ready", "reasons": reasons}, status=503)
    return web.json_response({"status": phase.value})


async def metrics(request: web.Request) -> web.Response:
    body, content_type = request.app[DEPS].metrics.exposition(request.headers.get("Accept", ""))
    return web.Response(body=body, headers={"Content-Type": content_type})


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document())


def job_to_json(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "state": job.state.value,
        "repositories": list(job.repositories),
        "dry_run": job.dry_run,
        "submitted_at": _timestamp(job.submitted_at),
        "started_at": _timestamp(job.started_at),
        "finished_at": _timestamp(job.finished_at),
        "report": report_to_json(job.report) if job.report else None,
        "error": job.error,
    }


def _timestamp(moment: datetime | None) -> str | None:
    return iso_utc(moment) if moment else None
