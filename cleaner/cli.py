"""Command line: settings in, one command run, errors mapped to exit codes, nothing else.

Exit codes: 0 done (also when there was nothing to do), 1 some repository failed,
2 bad usage, policy or configuration (nothing was deleted).

The heavy imports (aiohttp, aiobotocore) happen inside the commands, so `--help`,
`--version` and a configuration error answer at once.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TextIO

from cleaner.errors import CleanerError, ConfigError, PolicyError
from cleaner.logs import configure_logging
from cleaner.planning.model import RunReport
from cleaner.settings import Settings, load_token, parse_args

if TYPE_CHECKING:
    from cleaner.engine import Engine, SweepRequest

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
    """One line, whatever the error; a policy file with several problems names the first
    and points at `validate`, which names every one."""
    message = str(error)
    if isinstance(error, PolicyError) and len(error.problems) > 1:
        more = len(error.problems) - 1
        message = f"{error.problems[0]} (and {more} more; `ecr-cleaner validate` names them all)"
    print(f"ecr-cleaner: error: {message}", file=sys.stderr)
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
    from cleaner import prompt, wiring
    from cleaner.engine import SweepRequest
    from cleaner.engine.core import run_targets
    from cleaner.progress import terminal_progress
    from cleaner.reports.stream import open_writer

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
        report: RunReport | None = None
        if run.apply and not run.yes and prompt.can_ask():
            confirmed, report = await ask_first(runs)
            if confirmed is None:
                print("ecr-cleaner: cancelled: nothing deleted", file=sys.stderr)
                return EXIT_FAILED
            runs = confirmed
        writer = open_writer(
            run.output,
            out,
            dry_run=not run.apply,
            now=now,
            details=run.details,
            by_target=len(targets) > 1,
        )
        if report is None:
            # Each repository's report goes to the writer (and the metrics) as it finishes,
            # and the run keeps only its outcome: memory follows what is in flight.
            runs = [(engine, replace(request, keep_plans=False)) for engine, request in runs]
            # A report streamed to the same terminal would cut through the bar's lines.
            streamed = run.output != "text" and out.isatty()
            with terminal_progress(apply=run.apply, enabled=not streamed) as progress:
                report = await run_targets(
                    runs, metrics.watch(progress).recording(writer.repository)
                )
        else:
            for repository in report.repositories:
                writer.repository(repository)
        writer.finish(report)
        metrics.done(report)
    return EXIT_OK if report.ok else EXIT_FAILED


Runs = list[tuple["Engine", "SweepRequest"]]


async def ask_first(runs: Runs) -> tuple[Runs | None, RunReport | None]:
    """A sweep at a terminal plans first, shows the summary and asks. Then each target
    deletes only what was shown for it (an image expiring since is kept); a no deletes
    nothing (None); a plan that deletes nothing is the report itself."""
    from cleaner import prompt
    from cleaner.engine.core import run_targets
    from cleaner.progress import terminal_progress

    with terminal_progress(apply=False) as progress:
        plans = await asyncio.gather(
            *(run_targets([(e, replace(r, apply=False))], progress) for e, r in runs)
        )
    plan = RunReport.combine(dry_run=True, reports=plans)
    if not prompt.deletes_anything(plan):
        return runs, replace(plan, dry_run=False)
    if not await prompt.confirm_plan(plan, runs[0][1].now):
        return None, None
    # Per target: one repository name in two accounts is two sets of digests.
    approved = [
        (e, replace(r, approved=prompt.approved(p))) for (e, r), p in zip(runs, plans, strict=True)
    ]
    return approved, None


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
    from cleaner.planning.policy_file import load_policy_file
    from cleaner.reports.policy import describe_policy

    assert settings.file is not None  # noqa: S101 - argparse requires FILE
    try:
        policy = load_policy_file(settings.file)
    except PolicyError as error:  # every problem in the file, one line each
        for problem in error.problems:
            print(f"ecr-cleaner: error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    out.write(describe_policy(policy))
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


async def completion(settings: Settings, out: TextIO) -> int:
    """A completion script generated from the parser itself, so it never falls behind."""
    import shtab

    from cleaner.settings import build_parser

    parser = build_parser()
    for action in _actions(parser):
        if action.metavar == "FILE":
            action.complete = shtab.FILE  # type: ignore[attr-defined]
    out.write(shtab.complete(parser, shell=settings.shell or "bash"))
    return EXIT_OK


def _actions(parser: argparse.ArgumentParser) -> Iterator[argparse.Action]:
    for action in parser._actions:  # argparse has no public walk; shtab reads it the same way
        yield action
        for sub in getattr(action, "choices", None) or ():
            if isinstance(action.choices, dict):
                yield from _actions(action.choices[sub])


COMMANDS = {
    "plan": plan_or_sweep,
    "sweep": plan_or_sweep,
    "serve": serve,
    "validate": validate,
    "emulator": emulator,
    "demo": demo,
    "completion": completion,
}
