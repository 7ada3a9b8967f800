"""`ecr-cleaner serve`: flags, wiring, and the process lifetime (signals, drain, exit 0).

Order matters: the policy and the token are checked before anything connects or listens, so
a bad configuration exits 2 without touching a registry. SIGTERM (or SIGINT) fails
readiness, refuses new work with 503, lets running prunes finish within --drain-timeout,
then closes the listener.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from aiohttp import web

from cleaner.errors import ConfigError
from cleaner.logs import use_log_format
from cleaner.planning.policy_file import load_policy_file
from cleaner.receiver.auth import TokenAuth
from cleaner.receiver.events import Scope
from cleaner.receiver.http import Deps, drain, make_app
from cleaner.receiver.metrics import Metrics
from cleaner.receiver.pruner import EnginePruner
from cleaner.receiver.scheduler import SchedulerSettings

log = logging.getLogger("cleaner.serve")

TOKEN_ENV = "CLEANER_TOKEN"  # noqa: S105 - the variable's name, not a secret
ACCESS_LOG_FORMAT = '%a "%r" %s %b %Tfs'
HANDLER_SHUTDOWN_S = 5.0  # after the drain, requests still open get this long


def _number(kind: type[int] | type[float], minimum: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected at least {minimum}, got {text!r}")
        return value

    return parse


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get
    add = parser.add_argument
    add("--policy", default=env("CLEANER_POLICY"), help="policy file (env CLEANER_POLICY)")
    add("--host", default=env("CLEANER_HOST", "0.0.0.0"), help="default 0.0.0.0")  # noqa: S104 - a container service
    add("--port", type=_number(int, 0), default=int(env("CLEANER_PORT", "8080")))
    add("--token-file", default=env("CLEANER_TOKEN_FILE"), help=f"token file; else env {TOKEN_ENV}")
    add(
        "--insecure-no-auth",
        action="store_true",
        help="start without a token: anyone who reaches the port can prune (local use only)",
    )
    add("--account", default=env("CLEANER_ACCOUNT"), help="ignore events for other accounts")
    add(
        "--region",
        default=env("AWS_REGION"),
        help="AWS region (default: AWS_REGION, then the AWS chain); other regions' events ignored",
    )
    add("--endpoint-url", default=None, help="ECR endpoint (default: AWS_ENDPOINT_URL_ECR or AWS)")
    add("--concurrency", type=_number(int, 1), default=10, help="registry calls per prune")
    add("--max-prunes", type=_number(int, 1), default=4, help="prunes at once (default 4)")
    add("--debounce", type=_number(float, 0), default=1.0, help="seconds to collect a burst")
    add("--max-backlog", type=_number(int, 1), default=1000, help="waiting work before 429")
    add("--dedupe-window", type=_number(float, 0), default=600.0, help="seconds an id is kept")
    add("--drain-timeout", type=_number(float, 0), default=25.0, help="seconds at shutdown")
    add("--kubeconfig", default=None, help="kubeconfig for in-use protection")
    add("--kube-context", action="append", default=[], metavar="CONTEXT", help="repeatable")
    add(
        "--log-level",
        default=env("CLEANER_LOG_LEVEL", "INFO"),
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
    )
    add("--log-format", choices=["json", "text"], default=env("CLEANER_LOG_FORMAT", "json"))


def load_token(token_file: str | None, env_token: str | None, *, insecure: bool) -> str | None:
    """--token-file wins over CLEANER_TOKEN; no token at all is an error unless insecure."""
    token = env_token
    if token_file:
        try:
            token = Path(token_file).read_text(encoding="utf-8")
        except OSError as error:
            raise ConfigError(f"--token-file {token_file}: {error.strerror or error}") from error
    token = token.strip() if token else None
    if token:
        return token
    if insecure:
        return None
    raise ConfigError(
        f"no token: set {TOKEN_ENV} or --token-file (or --insecure-no-auth for local use)"
    )


async def run_serve(
    args: argparse.Namespace, *, on_started: Callable[[str], None] | None = None
) -> int:
    """Serve until SIGTERM/SIGINT, then drain; `on_started(url)` runs once listening."""
    if not args.policy:
        raise ConfigError("--policy FILE is required (or set CLEANER_POLICY)")
    policy = load_policy_file(args.policy)
    token = load_token(args.token_file, os.environ.get(TOKEN_ENV), insecure=args.insecure_no_auth)
    use_log_format(args.log_format)
    if token is None:
        log.warning("AUTH DISABLED (--insecure-no-auth): anyone who reaches this port can prune")
    region = args.region or _default_region()
    settings = SchedulerSettings(
        debounce_s=args.debounce,
        max_prunes=args.max_prunes,
        max_backlog=args.max_backlog,
        dedupe_window_s=args.dedupe_window,
    )
    metrics = Metrics()
    from cleaner.engine import Engine
    from cleaner.kube import cluster_ports, resolve
    from cleaner.registries.ecr import EcrRegistry

    kube = resolve(policy.clusters, kubeconfig=args.kubeconfig, contexts=args.kube_context)
    async with (
        EcrRegistry.connect(
            region=region,
            endpoint_url=args.endpoint_url,
            max_connections=args.concurrency,
            on_call=metrics.record_ecr_call,
        ) as registry,
        cluster_ports(kube, watch=True) as (in_use, coordinator),
    ):
        engine = Engine(registry, in_use=in_use, coordinator=coordinator)
        deps = Deps(
            pruner=EnginePruner(engine, policy, args.concurrency),
            auth=TokenAuth(token),
            scope=Scope(account=args.account, region=region),
            schedule=settings,
            drain_timeout_s=args.drain_timeout,
            metrics=metrics,
        )
        await serve_app(make_app(deps), args.host, args.port, on_started=on_started)
    return 0


def _default_region() -> str | None:
    """The region the AWS chain resolves (env, profile), as the ECR client will use it."""
    from aiobotocore.session import get_session

    region = get_session().get_config_variable("region")
    return str(region) if region else None


KEEPALIVE_TIMEOUT_S = 75.0


async def serve_app(
    app: web.Application,
    host: str,
    port: int,
    *,
    on_started: Callable[[str], None] | None = None,
) -> None:
    runner = web.AppRunner(
        app,
        access_log_format=ACCESS_LOG_FORMAT,
        shutdown_timeout=HANDLER_SHUTDOWN_S,
        # aiohttp's default keeps an idle or half-sent connection for an hour; EventBridge
        # closes after each request anyway, so a short idle limit costs nothing.
        keepalive_timeout=KEEPALIVE_TIMEOUT_S,
    )
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
