"""Command line: parse arguments, map errors to exit codes, nothing else.

Exit codes: 0 done (also when there was nothing to do), 1 some repository failed,
2 bad usage, policy or configuration (nothing was deleted).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TextIO

from cleaner import __version__
from cleaner.errors import ClusterError, ConfigError, RegistryError
from cleaner.planning.model import RunReport

if TYPE_CHECKING:
    from cleaner.engine import Shard

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
log = logging.getLogger("cleaner")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ecr-cleaner",
        description="Prune Amazon ECR repositories with exact lifecycle-policy semantics.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    plan = sub.add_parser("plan", help="show what a policy would keep and expire; never deletes")
    _add_run_options(plan)
    sweep = sub.add_parser("sweep", help="plan, then delete what the policy expires")
    _add_run_options(sweep)
    sweep.add_argument("--dry-run", action="store_true", help="plan only, delete nothing")
    sweep.add_argument(
        "--audit-log",
        default=os.environ.get("CLEANER_AUDIT_LOG"),
        metavar="FILE",
        help="append one JSON line per deleted image (env CLEANER_AUDIT_LOG)",
    )
    sweep.add_argument("--shard", default=None, metavar="I/N", help="only shard I of N (0-based)")
    sweep.add_argument(
        "--shards",
        type=_positive_int,
        default=None,
        metavar="N",
        help="N shards; this pod's index comes from JOB_COMPLETION_INDEX (Indexed Job)",
    )
    validate = sub.add_parser("validate", help="check a policy file; exit 2 if it is invalid")
    validate.add_argument("file", metavar="FILE")
    _add_logging_option(validate)
    serve = sub.add_parser("serve", help="receive EventBridge push events and prune at once")
    from cleaner.receiver.serve import add_serve_arguments

    add_serve_arguments(serve)
    _add_emulator_parser(sub)
    demo = sub.add_parser("demo", help="run plan and sweep against a seeded local emulator")
    _add_logging_option(demo, default="WARNING")  # the demo's output is the report itself
    return parser


def _add_logging_option(parser: argparse.ArgumentParser, default: str = "INFO") -> None:
    parser.add_argument(
        "--log-level",
        default=os.environ.get("CLEANER_LOG_LEVEL", default),
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help=f"stderr log level (env CLEANER_LOG_LEVEL, default {default})",
    )


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("repositories", nargs="*", metavar="REPOSITORY", help="default: all")
    parser.add_argument(
        "--policy",
        default=os.environ.get("CLEANER_POLICY"),
        help="policy file, YAML or JSON (env CLEANER_POLICY)",
    )
    parser.add_argument("--output", choices=["text", "json"], default="text")
    parser.add_argument(
        "--region",
        default=os.environ.get("AWS_REGION"),
        help="AWS region (default: AWS_REGION, then the AWS chain: AWS_DEFAULT_REGION, profile)",
    )
    parser.add_argument(
        "--endpoint-url", default=None, help="ECR endpoint (default: AWS_ENDPOINT_URL_ECR or AWS)"
    )
    parser.add_argument(
        "--concurrency",
        type=_positive_int,
        default=_positive_int(os.environ.get("CLEANER_CONCURRENCY", "10")),
        help="most registry calls in flight (env CLEANER_CONCURRENCY, default 10)",
    )
    parser.add_argument("--kubeconfig", default=None, help="kubeconfig for in-use protection")
    parser.add_argument(
        "--kube-context",
        action="append",
        default=[],
        metavar="CONTEXT",
        help="a cluster sharing this registry (repeatable; default: the policy's, or current)",
    )
    _add_logging_option(parser)


def _add_emulator_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    emulator = sub.add_parser("emulator", help="serve a local ECR-compatible API")
    emulator.add_argument("--host", default="127.0.0.1")
    emulator.add_argument("--port", type=int, default=5000)
    emulator.add_argument("--seed", choices=["demo", "none"], default="none")
    emulator.add_argument("--latency-ms", type=float, default=0.0)
    emulator.add_argument(
        "--throttle",
        action="append",
        default=[],
        metavar="OPERATION=TPS",
        type=_throttle,
        help="rate-limit one operation, e.g. BatchDeleteImage=20 (repeatable)",
    )
    emulator.add_argument("--error-rate", type=float, default=0.0, help="share of calls that 500")
    _add_logging_option(emulator)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _throttle(text: str) -> tuple[str, float]:
    operation, _, rate = text.partition("=")
    try:
        tps = float(rate)
    except ValueError:
        tps = 0.0
    if not operation or tps <= 0:
        raise argparse.ArgumentTypeError(f"expected OPERATION=TPS, got {text!r}")
    return operation, tps


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return asyncio.run(dispatch(args, sys.stdout))
    except KeyboardInterrupt:
        return 130


async def dispatch(args: argparse.Namespace, out: TextIO) -> int:
    """Run one parsed command; errors become exit codes here and nowhere else."""
    try:
        if args.command in ("plan", "sweep"):
            return await _plan_or_sweep(args, out)
        if args.command == "serve":
            from cleaner.receiver.serve import run_serve

            return await run_serve(args)
        if args.command == "validate":
            from cleaner.output import describe_policy
            from cleaner.planning.policy_file import load_policy_file

            out.write(describe_policy(load_policy_file(args.file)))
            return EXIT_OK
        if args.command == "emulator":
            from cleaner.emulator import serve

            await serve(
                args.host,
                args.port,
                seed=args.seed,
                latency_ms=args.latency_ms,
                throttle=dict(args.throttle),
                error_rate=args.error_rate,
            )
            return EXIT_OK
        from cleaner.demo import run_demo

        return await run_demo(out)
    except ConfigError as error:
        print(f"ecr-cleaner: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except (RegistryError, ClusterError) as error:
        print(f"ecr-cleaner: failed: {error}", file=sys.stderr)
        return EXIT_FAILED


async def _plan_or_sweep(args: argparse.Namespace, out: TextIO) -> int:
    from cleaner.engine import Engine, SweepRequest
    from cleaner.kube import cluster_ports, resolve
    from cleaner.planning.policy_file import load_policy_file
    from cleaner.progress import terminal_progress
    from cleaner.registries.ecr import EcrRegistry

    if not args.policy:
        raise ConfigError("--policy FILE is required (or set CLEANER_POLICY)")
    policy = load_policy_file(args.policy)  # before any registry call: bad input deletes nothing
    apply = args.command == "sweep" and not args.dry_run
    if not apply:
        log.info("DRY RUN: planning only, nothing will be deleted")
    now = datetime.now(UTC)
    request = SweepRequest(
        policy=policy,
        now=now,
        repositories=tuple(args.repositories),
        apply=apply,
        concurrency=args.concurrency,
        shard=_shard(args),
    )
    kube = resolve(policy.clusters, kubeconfig=args.kubeconfig, contexts=args.kube_context)
    with audit_log(getattr(args, "audit_log", None)) as audit:
        async with (
            EcrRegistry.connect(
                region=args.region,
                endpoint_url=args.endpoint_url,
                max_connections=args.concurrency,
            ) as registry,
            cluster_ports(kube, watch=False, coordinate=apply) as (in_use, coordinator),
        ):
            engine = Engine(registry, in_use=in_use, coordinator=coordinator, audit=audit)
            with terminal_progress(enabled=apply) as progress:
                report = await engine.run(request, progress)
    write_report(report, args.output, now, out)
    return EXIT_OK if report.ok else EXIT_FAILED


@contextmanager
def audit_log(path: str | None) -> Iterator[Callable[[dict[str, object]], None] | None]:
    """A sink appending one JSON line per deletion, flushed at once (a crash loses none)."""
    if not path:
        yield None
        return
    try:
        stream = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in finally
    except OSError as error:
        raise ConfigError(f"--audit-log {path}: {error.strerror or error}") from error

    def write(record: dict[str, object]) -> None:
        stream.write(json.dumps(record, sort_keys=True) + "\n")
        stream.flush()

    try:
        yield write
    finally:
        stream.close()


def _shard(args: argparse.Namespace) -> Shard | None:
    """`--shard I/N`, or `--shards N` with the index from an Indexed Job's JOB_COMPLETION_INDEX."""
    from cleaner.engine import Shard

    text = getattr(args, "shard", None)
    if text is None and getattr(args, "shards", None) is not None:
        index = os.environ.get("JOB_COMPLETION_INDEX")
        if index is None:
            raise ConfigError("--shards needs JOB_COMPLETION_INDEX (an Indexed Job) or use --shard")
        text = f"{index}/{args.shards}"
    if text is None:
        return None
    if args.repositories:
        raise ConfigError("--shard splits the listed registry; do not also name repositories")
    index, _, count = text.partition("/")
    try:
        return Shard(int(index), int(count))
    except ValueError as error:
        raise ConfigError(f"bad shard {text!r}: expected I/N with 0 <= I < N ({error})") from error


def write_report(report: RunReport, output: str, now: datetime, out: TextIO) -> None:
    from cleaner.output import render_text, report_to_json

    if output == "json":
        json.dump(report_to_json(report), out, indent=2)
        out.write("\n")
    else:
        out.write(render_text(report, now))
