"""Command line: settings in, one command run, errors mapped to exit codes, nothing else.

Exit codes: 0 done (also when there was nothing to do), 1 some repository failed,
2 bad usage, policy or configuration (nothing was deleted).

The heavy imports (aiohttp, aiobotocore) happen inside the commands, so `--help`,
`--version` and a configuration error answer at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TextIO

from cleaner.errors import CleanerError, ConfigError
from cleaner.logs import configure_logging
from cleaner.settings import Settings, load_token, parse_args

if TYPE_CHECKING:
    from cleaner.planning.model import RunReport

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
log = logging.getLogger("cleaner")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        settings = parse_args(argv)
    except ConfigError as error:
        return usage_error(error)
    configure_logging(settings.log.level, settings.log.format)
    try:
        return asyncio.run(dispatch(settings, sys.stdout))
    except KeyboardInterrupt:
        return 130


def usage_error(error: ConfigError) -> int:
    print(f"ecr-cleaner: error: {error}", file=sys.stderr)
    return EXIT_USAGE


async def dispatch(settings: Settings, out: TextIO) -> int:
    """Run one command; errors become exit codes here and nowhere else."""
    try:
        return await COMMANDS[settings.command](settings, out)
    except ConfigError as error:
        return usage_error(error)
    except CleanerError as error:
        print(f"ecr-cleaner: failed: {error}", file=sys.stderr)
        return EXIT_FAILED


async def plan_or_sweep(settings: Settings, out: TextIO) -> int:
    from cleaner import wiring
    from cleaner.engine import SweepRequest
    from cleaner.engine.core import run_targets
    from cleaner.progress import terminal_progress

    engine_settings, run = settings.engine, settings.run
    assert engine_settings is not None and run is not None  # noqa: S101 - parse_args sets both
    policy = wiring.load_policy(engine_settings)  # before any registry call
    if not run.apply:
        log.info("DRY RUN: planning only, nothing will be deleted")
    now = datetime.now(UTC)
    mode: wiring.Mode = "sweep" if run.apply else "plan"
    async with (
        wiring.open_run_metrics(run) as metrics,
        wiring.open_engines(
            engine_settings, policy, mode, audit_path=run.audit_log, on_call=metrics.on_call
        ) as targets,
    ):
        runs = [
            (
                one.engine,
                SweepRequest(
                    policy=one.policy,
                    now=now,
                    repositories=run.repositories,
                    apply=run.apply,
                    concurrency=engine_settings.concurrency,
                    shard=run.shard,
                ),
            )
            for one in targets
        ]
        with terminal_progress(enabled=run.apply) as progress:
            report = await run_targets(runs, metrics.watch(progress))
        metrics.done(report)
    write_report(report, run.output, now, out)
    return EXIT_OK if report.ok else EXIT_FAILED


async def serve(
    settings: Settings,
    out: TextIO | None = None,
    *,
    on_started: Callable[[str], None] | None = None,
) -> int:
    """Serve until SIGTERM/SIGINT, then drain; `on_started(url)` runs once listening."""
    from cleaner import wiring
    from cleaner.receiver.serve import serve_app

    engine_settings, serve_settings = settings.engine, settings.serve
    assert engine_settings is not None and serve_settings is not None  # noqa: S101
    policy = wiring.load_policy(engine_settings)
    token = load_token(serve_settings)
    if token is None:
        log.warning("AUTH DISABLED (--insecure-no-auth): anyone who reaches this port can prune")
    async with wiring.open_receiver(engine_settings, serve_settings, policy, token) as app:
        host, port = serve_settings.host, serve_settings.port
        await serve_app(app, host, port, on_started=on_started)
    return EXIT_OK


async def validate(settings: Settings, out: TextIO) -> int:
    from cleaner.output import describe_policy
    from cleaner.planning.policy_file import load_policy_file

    assert settings.file is not None  # noqa: S101 - argparse requires FILE
    out.write(describe_policy(load_policy_file(settings.file)))
    return EXIT_OK


async def emulator(settings: Settings, out: TextIO) -> int:
    from cleaner.emulator import serve as serve_emulator

    chosen = settings.emulator
    assert chosen is not None  # noqa: S101 - parse_args sets it
    await serve_emulator(
        chosen.host,
        chosen.port,
        seed=chosen.seed,
        latency_ms=chosen.latency_ms,
        throttle=dict(chosen.throttle),
        error_rate=chosen.error_rate,
    )
    return EXIT_OK


async def demo(settings: Settings, out: TextIO) -> int:
    from cleaner.demo import run_demo

    assert settings.demo is not None  # noqa: S101 - parse_args sets it
    return await run_demo(out, concurrency=settings.demo.concurrency)


COMMANDS = {
    "plan": plan_or_sweep,
    "sweep": plan_or_sweep,
    "serve": serve,
    "validate": validate,
    "emulator": emulator,
    "demo": demo,
}


def write_report(report: RunReport, output: str, now: datetime, out: TextIO) -> None:
    from cleaner.output import render_text, report_to_json

    if output == "json":
        json.dump(report_to_json(report), out, indent=2)
        out.write("\n")
    else:
        out.write(render_text(report, now))
