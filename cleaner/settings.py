"""Process settings: flags and `CLEANER_*` variables, parsed once into one frozen `Settings`.

Every option is declared once, in a table: its flag, its variable, its parser and its
default. The command line wins over the environment, the environment over the default.
argparse only collects strings, so reading `--help` or `--version` never looks at the
environment; `parse_args` then checks every value before anything connects, and a bad one
is a `ConfigError` naming the flag or variable (one line, exit 2). The files the settings
name (the policy, the token) are read by the command, before anything connects.
"""

from __future__ import annotations

import argparse
import os
import re
import textwrap
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cleaner.errors import ConfigError
from cleaner.planning.model import Shard
from cleaner.planning.names import is_external_id, is_region, is_role_arn, registry_url
from cleaner.version import version_line

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("text", "json")
OUTPUTS = ("text", "json", "jsonl", "html")
TOKEN_ENV = "CLEANER_TOKEN"  # noqa: S105 - the variable's name, not a secret
REGISTRY_PASSWORD_ENV = "CLEANER_REGISTRY_PASSWORD"  # noqa: S105 - a name, not a secret
SHOWN_MAX = 60  # characters of a bad value quoted back in an error


# --- value parsers: each raises ValueError with what was expected --------------------------


def integer(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise ValueError("expected a whole number") from None
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"from {minimum} to {maximum}" if maximum is not None else f">= {minimum}"
            raise ValueError(f"expected a whole number {bound}")
        return value

    return parse


def number(minimum: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            raise ValueError("expected a number") from None
        if not value >= minimum or value == float("inf"):  # also refuses nan
            raise ValueError(f"expected a finite number >= {minimum:g}")
        return value

    return parse


def one_of(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return text

    return parse


def text(value: str) -> str:
    return value


def region_name(value: str) -> str:
    if not is_region(value):
        raise ValueError("expected an AWS region such as eu-west-1")
    return value


def role_arn(value: str) -> str:
    if not is_role_arn(value):
        raise ValueError("expected an IAM role ARN, arn:aws:iam::<account>:role/<name>")
    return value


def external_id(value: str) -> str:
    if not is_external_id(value):
        raise ValueError("expected 2 to 1224 letters, digits or +=,.@:/-")
    return value


def throttle(value: str) -> tuple[str, float]:
    operation, _, rate = value.partition("=")
    tps = number(0)(rate) if rate else 0.0
    if not operation or tps <= 0:
        raise ValueError("expected OPERATION=TPS, e.g. BatchDeleteImage=20")
    return operation, tps


def http_url(value: str) -> str:
    parts = urllib.parse.urlsplit(value.strip())
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ValueError("expected http(s)://HOST[:PORT][/PATH]") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("expected http(s)://HOST[:PORT][/PATH]")
    return value.strip().rstrip("/")


def textfile(value: str) -> str:
    # node-exporter's textfile collector reads only *.prom files.
    if Path(value).suffix != ".prom":
        raise ValueError("expected a file name ending in .prom")
    return value


def nonempty(value: str) -> str:
    if not value.strip():
        raise ValueError("expected a name")
    return value.strip()


# An SQS queue name: 1 to 80 letters, digits, hyphens and underscores (".fifo" for FIFO),
# as the CreateQueue API reference defines it.
QUEUE_NAME = re.compile(r"[A-Za-z0-9_-]{1,80}(\.fifo)?")


def queue_url(value: str) -> str:
    """An SQS queue URL: https://sqs.REGION.amazonaws.com/ACCOUNT/NAME, or a local server's."""
    parts = urlsplit(value.strip())
    name = parts.path.rstrip("/").rsplit("/", 1)[-1]
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
        raise ValueError(
            "expected a queue URL such as https://sqs.REGION.amazonaws.com/ACCOUNT/NAME"
        )
    if not QUEUE_NAME.fullmatch(name):
        raise ValueError("the URL does not end in a queue name (letters, digits, - and _)")
    return value.strip()


def shard(value: str) -> Shard:
    index, _, count = value.partition("/")
    try:
        return Shard(int(index), int(count))
    except ValueError:
        raise ValueError("expected I/N with 0 <= I < N") from None


# --- the option table ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Option:
    """One setting: where it comes from, how it is checked, what it is without either."""

    flag: str
    parse: Callable[[str], Any] = text
    default: Any = None
    env: str | None = None
    help: str = ""
    metavar: str | None = None
    switch: bool = False
    """A flag without a value (`--dry-run`): True when given."""
    repeat: bool = False
    """May be given more than once; the values form a tuple."""

    @property
    def dest(self) -> str:
        return self.flag.removeprefix("--").replace("-", "_")

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        where = [f"env {self.env}"] if self.env else []
        if self.default not in (None, False, ()):
            where.append(f"default {self.default}")
        help_text = f"{self.help} ({', '.join(where)})" if where else self.help
        if self.switch:
            parser.add_argument(self.flag, action="store_true", default=None, help=help_text)
        elif self.repeat:
            parser.add_argument(self.flag, action="append", metavar=self.metavar, help=help_text)
        else:
            parser.add_argument(self.flag, metavar=self.metavar, help=help_text)

    def value(self, namespace: argparse.Namespace, environ: Mapping[str, str]) -> Any:
        given = getattr(namespace, self.dest, None)
        if given is not None:
            return True if self.switch else self._parse(given, self.flag)
        if self.env and environ.get(self.env, "") != "":
            return self._parse_env(environ[self.env])
        return self.default

    def _parse(self, given: str | list[str], where: str) -> Any:
        if isinstance(given, list):
            return tuple(self._one(v, where) for v in given)
        return self._one(given, where)

    def _parse_env(self, raw: str) -> Any:
        if self.switch:
            return self._one(raw, self.env or self.flag, parse=_boolean)
        if self.repeat:  # a list in one variable: comma-separated
            return self._parse([v.strip() for v in raw.split(",") if v.strip()], self.env or "")
        return self._parse(raw, self.env or self.flag)

    def _one(self, raw: str, where: str, parse: Callable[[str], Any] | None = None) -> Any:
        try:
            return (parse or self.parse)(raw)
        except ValueError as error:
            raise ConfigError(f"{where}={_shown(raw)}: {error}") from None


def _boolean(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def _shown(value: str) -> str:
    quoted = repr(value)
    return quoted if len(quoted) <= SHOWN_MAX else quoted[: SHOWN_MAX - 4] + "...'"


POLICY = Option("--policy", env="CLEANER_POLICY", metavar="FILE", help="policy file, YAML or JSON")
CONCURRENCY = Option(
    "--concurrency",
    integer(1),
    10,
    "CLEANER_CONCURRENCY",
    "most repositories pruned at once; each makes one registry call at a time",
)
LOG_LEVEL = Option(
    "--log-level", one_of(*LOG_LEVELS), "INFO", "CLEANER_LOG_LEVEL", "stderr log level"
)
REGION = Option(
    "--region",
    region_name,
    (),
    "AWS_REGION",
    "AWS region; repeat it to sweep several (else the AWS chain: AWS_DEFAULT_REGION, profile)",
    repeat=True,
)
ROLE_ARN = Option(
    "--role-arn",
    role_arn,
    (),
    "CLEANER_ROLE_ARNS",
    "sweep the account of this IAM role, assumed from the AWS chain; repeatable",
    metavar="ARN",
    repeat=True,
)
EXTERNAL_ID = Option(
    "--external-id",
    external_id,
    env="CLEANER_EXTERNAL_ID",
    help="the external id the roles' trust policies ask for",
)
ENDPOINT = Option("--endpoint-url", help="ECR endpoint (else AWS_ENDPOINT_URL_ECR, else AWS)")
# An OCI Distribution registry instead of ECR; the password only from the environment, so
# it never shows in a process list.
REGISTRY = Option(
    "--registry",
    registry_url,
    env="CLEANER_REGISTRY",
    metavar="URL",
    help="prune this OCI registry (http(s)://HOST[:PORT]) instead of ECR",
)
REGISTRY_USERNAME = Option(
    "--registry-username",
    env="CLEANER_REGISTRY_USERNAME",
    metavar="NAME",
    help=f"log in to --registry as NAME, the password from env {REGISTRY_PASSWORD_ENV} "
    "(else ~/.docker/config.json)",
)
FIRST_SEEN_FILE = Option(
    "--first-seen-file",
    env="CLEANER_FIRST_SEEN_FILE",
    metavar="FILE",
    help="--registry: age images from when this cleaner first saw them, kept in FILE",
)
KUBECONFIG = Option("--kubeconfig", metavar="FILE", help="kubeconfig for in-use protection")
KUBE_CONTEXT = Option(
    "--kube-context",
    repeat=True,
    default=(),
    metavar="CONTEXT",
    help="a cluster sharing this registry; repeatable (default: the policy's, or the current)",
)
OUTPUT = Option(
    "--output",
    one_of(*OUTPUTS),
    "text",
    help=(
        "text for people, json for machines (one object), jsonl for log pipelines (a line "
        "per repository, then the summary), html for one self-contained page to review"
    ),
    metavar="|".join(OUTPUTS),
)
DRY_RUN = Option("--dry-run", switch=True, default=False, help="plan only, delete nothing")
YES = Option(
    "--yes",
    switch=True,
    default=False,
    help="delete without asking first (only a terminal is asked; a pipe or a CronJob never)",
)
DETAILS = Option(
    "--details",
    switch=True,
    help="text: list every image's decision (default: only when the run has at most 100)",
)
AUDIT_LOG = Option(
    "--audit-log", env="CLEANER_AUDIT_LOG", metavar="FILE", help="append a JSON line per deletion"
)
SHARD = Option("--shard", shard, metavar="I/N", help="only shard I of N (0-based)")
SHARDS = Option(
    "--shards",
    integer(1),
    metavar="N",
    help="N shards; this pod's index comes from JOB_COMPLETION_INDEX (an Indexed Job)",
)
METRICS = (  # the sweep's metrics sinks (cleaner/sweep_metrics.py)
    Option(
        "--pushgateway",
        http_url,
        env="CLEANER_PUSHGATEWAY",
        metavar="URL",
        help="push the run's metrics to this Prometheus Pushgateway when it ends",
    ),
    Option(
        "--metrics-file",
        textfile,
        env="CLEANER_METRICS_FILE",
        metavar="FILE.prom",
        help="write the run's metrics there, for node-exporter's textfile collector",
    ),
    Option(
        "--metrics-job",
        nonempty,
        "ecr-cleaner-sweep",
        "CLEANER_METRICS_JOB",
        "the job the metrics are pushed as (with the shard's index)",
        metavar="NAME",
    ),
)

SERVE_OPTIONS = (
    Option("--host", default="0.0.0.0", env="CLEANER_HOST", help="address to listen on"),  # noqa: S104 - a container service
    Option("--port", integer(0, 65535), 8080, "CLEANER_PORT", "port to listen on (0: any free)"),
    Option("--token-file", env="CLEANER_TOKEN_FILE", metavar="FILE", help=f"else env {TOKEN_ENV}"),
    Option(
        "--insecure-no-auth",
        switch=True,
        default=False,
        help="start without a token: anyone who reaches the port can prune (local use only)",
    ),
    Option("--account", env="CLEANER_ACCOUNT", help="ignore events for other accounts"),
    AUDIT_LOG,
    Option("--max-prunes", integer(1), 4, "CLEANER_MAX_PRUNES", "prunes at once"),
    Option("--debounce", number(0), 1.0, "CLEANER_DEBOUNCE", "seconds to collect a burst"),
    Option("--max-backlog", integer(1), 1000, "CLEANER_MAX_BACKLOG", "waiting work before 429"),
    Option("--dedupe-window", number(0), 600.0, "CLEANER_DEDUPE_WINDOW", "seconds an id is kept"),
    Option("--drain-timeout", number(0), 25.0, "CLEANER_DRAIN_TIMEOUT", "seconds at shutdown"),
    Option(
        "--queue-url",
        queue_url,
        env="CLEANER_QUEUE_URL",
        metavar="URL",
        help="also consume EventBridge events from this SQS queue (no inbound traffic needed)",
    ),
)
EMULATOR_OPTIONS = (
    Option("--host", default="127.0.0.1", help="address to listen on"),
    Option("--port", integer(0, 65535), 5000, help="port to listen on"),
    Option("--seed", one_of("demo", "none"), "none", help="images to start with"),
    Option("--latency-ms", number(0), 0.0, help="added to every answer"),
    Option(
        "--throttle",
        throttle,
        (),
        repeat=True,
        metavar="OPERATION=TPS",
        help="rate-limit one operation, e.g. BatchDeleteImage=20 (repeatable)",
    ),
    Option("--error-rate", number(0), 0.0, help="share of calls that answer 500"),
)


LOG_FORMAT = Option("--log-format", one_of(*LOG_FORMATS), "text", "CLEANER_LOG_FORMAT", "log lines")
ENGINE_OPTIONS = (
    POLICY, CONCURRENCY, REGION, ROLE_ARN, EXTERNAL_ID, ENDPOINT, REGISTRY, REGISTRY_USERNAME,
    FIRST_SEEN_FILE, KUBECONFIG, KUBE_CONTEXT,
)  # fmt: skip
LOG_OPTIONS = (LOG_LEVEL, LOG_FORMAT)
COMMANDS: dict[str, tuple[str, tuple[Option, ...]]] = {
    "plan": (
        "show what a policy would keep and expire; never deletes",
        (*ENGINE_OPTIONS, *LOG_OPTIONS, OUTPUT, DETAILS),
    ),
    "sweep": (
        "plan, then DELETE what the policy expires; --dry-run only plans",
        (
            *ENGINE_OPTIONS,
            *LOG_OPTIONS,
            OUTPUT,
            DETAILS,
            DRY_RUN,
            YES,
            AUDIT_LOG,
            SHARD,
            SHARDS,
            *METRICS,
        ),
    ),
    "serve": (
        "receive push events (EventBridge by HTTP or SQS, or a registry's own) and prune at once",
        # A service's logs go to a log shipper: JSON unless asked otherwise.
        (*ENGINE_OPTIONS, LOG_LEVEL, replace(LOG_FORMAT, default="json"), *SERVE_OPTIONS),
    ),
    "validate": ("check a policy file; exit 2 if it is invalid", LOG_OPTIONS),
    "emulator": ("serve a local ECR-compatible API", (*EMULATOR_OPTIONS, *LOG_OPTIONS)),
    # The demo brings its own emulator and policy and reads no cluster; its output is the
    # report itself, so it logs only warnings unless asked.
    "demo": (
        "run plan and sweep against a seeded local emulator",
        (CONCURRENCY, replace(LOG_LEVEL, default="WARNING"), LOG_FORMAT),
    ),
    "completion": ("print a shell completion script for bash or zsh", ()),
}
SHELLS = ("bash", "zsh")
DESCRIPTIONS = {
    "sweep": "Plan, then delete every image the policy expires. This deletes: with --dry-run "
    "it only plans, like `plan`. At a terminal it shows the plan's summary and asks first "
    "(--yes does not ask); without a terminal to answer (a CronJob, CI) it never asks.",
    "plan": "Show what the policy would keep and expire, and why, with the bytes each "
    "repository would reclaim. Never deletes.",
}
EXAMPLES = {
    "plan": (
        "ecr-cleaner plan --policy policy.yaml",
        "ecr-cleaner plan --policy policy.yaml team/api --details",
        "ecr-cleaner plan --policy policy.yaml --output html > plan.html",
    ),
    "sweep": (
        "ecr-cleaner sweep --policy policy.yaml --dry-run",
        "ecr-cleaner sweep --policy policy.yaml team/api",
        "ecr-cleaner sweep --policy policy.yaml --yes --audit-log audit.jsonl --output json",
    ),
    "serve": (
        "CLEANER_TOKEN_FILE=/run/secrets/token ecr-cleaner serve --policy policy.yaml",
        "ecr-cleaner serve --policy policy.yaml --insecure-no-auth --host 127.0.0.1",
    ),
    "validate": (
        "ecr-cleaner validate k8s/policy.yaml",
        "ecr-cleaner validate lifecycle-policy.json",
    ),
    "emulator": (
        "ecr-cleaner emulator --seed demo",
        "ecr-cleaner emulator --latency-ms 20 --throttle DescribeImages=50 --error-rate 0.05",
    ),
    "demo": ("ecr-cleaner demo", "ecr-cleaner demo --concurrency 2"),
    "completion": (
        "ecr-cleaner completion bash > ~/.local/share/bash-completion/completions/ecr-cleaner",
        'ecr-cleaner completion zsh > "${fpath[1]}/_ecr-cleaner"',
    ),
}
POSITIONALS = {
    "plan": ("repositories", "*", "REPOSITORY", "default: every repository a policy entry matches"),
    "sweep": (
        "repositories",
        "*",
        "REPOSITORY",
        "default: every repository a policy entry matches",
    ),
    "validate": ("file", None, "FILE", "the policy file"),
    "completion": ("shell", None, "SHELL", "bash or zsh"),
}


class _Version(argparse.Action):
    """argparse's own version action, but the revision is looked up only when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        kwargs.update(nargs=0, default=argparse.SUPPRESS)
        super().__init__(option_strings, argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        print(version_line(parser.prog))
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    """Strings only: values are checked by `parse_args`, after --help and --version."""
    parser = argparse.ArgumentParser(
        prog="ecr-cleaner",
        description="Prune Amazon ECR repositories with exact lifecycle-policy semantics.",
    )
    parser.add_argument("--version", action=_Version, help="print the version and revision, exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (summary, options) in COMMANDS.items():
        command = sub.add_parser(
            name,
            help=summary,
            description=textwrap.fill(DESCRIPTIONS.get(name, summary.capitalize() + "."), 79),
            epilog="examples:\n" + "\n".join(f"  {line}" for line in EXAMPLES[name]),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        if name in POSITIONALS:
            dest, nargs, metavar, help_text = POSITIONALS[name]
            command.add_argument(dest, nargs=nargs, metavar=metavar, help=help_text)
        for option in options:
            option.add_to(command)
    return parser


# --- the settings ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LogSettings:
    level: str = "INFO"
    format: str = "text"


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """What every command that runs the engine needs."""

    policy_path: str
    concurrency: int = 10
    regions: tuple[str, ...] = ()
    """() = the AWS chain's region."""
    role_arns: tuple[str, ...] = ()
    """Each role's account is swept in every region; () = the chain's own account."""
    external_id: str | None = None
    endpoint_url: str | None = None
    kubeconfig: str | None = None
    kube_contexts: tuple[str, ...] = ()
    registry: str | None = None
    """An OCI Distribution registry to prune instead of ECR (else the policy's `registry:`)."""
    registry_username: str | None = None
    registry_password: str | None = field(default=None, repr=False)
    first_seen_file: str | None = None


@dataclass(frozen=True, slots=True)
class RunSettings:
    """`plan` and `sweep`."""

    repositories: tuple[str, ...] = ()
    output: str = "text"
    apply: bool = False
    """A sweep without --dry-run; a plan never applies."""
    audit_log: str | None = None
    shard: Shard | None = None
    details: bool | None = None
    """Text output: every decision (True), none (False), or only for small runs (None)."""
    yes: bool = False
    """A sweep at a terminal deletes without asking first."""
    metrics: MetricsSettings | None = None
    """Where the sweep's metrics go; None: nowhere."""


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    pushgateway: str | None = None
    file: str | None = None
    job: str = "ecr-cleaner-sweep"


@dataclass(frozen=True, slots=True)
class ServeSettings:
    host: str = "0.0.0.0"  # noqa: S104 - a container service
    port: int = 8080
    token_file: str | None = None
    insecure_no_auth: bool = False
    account: str | None = None
    audit_log: str | None = None
    max_prunes: int = 4
    debounce_s: float = 1.0
    max_backlog: int = 1000
    dedupe_window_s: float = 600.0
    drain_timeout_s: float = 25.0
    queue_url: str | None = None


@dataclass(frozen=True, slots=True)
class EmulatorSettings:
    host: str = "127.0.0.1"
    port: int = 5000
    seed: str = "none"
    latency_ms: float = 0.0
    throttle: tuple[tuple[str, float], ...] = ()
    error_rate: float = 0.0


@dataclass(frozen=True, slots=True)
class DemoSettings:
    concurrency: int = 10


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything one invocation was asked to do, checked."""

    command: str
    log: LogSettings = field(default_factory=LogSettings)
    engine: EngineSettings | None = None
    run: RunSettings | None = None
    serve: ServeSettings | None = None
    emulator: EmulatorSettings | None = None
    demo: DemoSettings | None = None
    file: str | None = None
    """`validate FILE`."""
    shell: str | None = None
    """`completion SHELL`."""


def parse_args(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] = os.environ
) -> Settings:
    """The command line (argparse exits 2 on bad usage, 0 on --help), then every value
    checked; ConfigError names the first bad flag or variable."""
    namespace = build_parser().parse_args(argv)
    command: str = namespace.command
    _, options = COMMANDS[command]
    values = {option.dest: option.value(namespace, environ) for option in options}
    return Settings(
        command=command,
        log=LogSettings(values.get("log_level", "WARNING"), values.get("log_format", "text")),
        engine=_engine(values, command, environ),
        run=_run(values, namespace, command, environ),
        serve=_serve(values, environ) if command == "serve" else None,
        emulator=_emulator(values) if command == "emulator" else None,
        demo=DemoSettings(values["concurrency"]) if command == "demo" else None,
        file=getattr(namespace, "file", None),
        shell=_shell(getattr(namespace, "shell", None)),
    )


def _shell(given: str | None) -> str | None:
    if given is not None and given not in SHELLS:
        raise ConfigError(f"completion {_shown(given)}: expected one of {', '.join(SHELLS)}")
    return given


def _engine(
    values: Mapping[str, Any], command: str, environ: Mapping[str, str]
) -> EngineSettings | None:
    if command not in ("plan", "sweep", "serve"):
        return None
    if not values["policy"]:
        raise ConfigError("--policy FILE is required (or set CLEANER_POLICY)")
    if values["registry"] and values["role_arn"]:
        raise ConfigError("--registry is one OCI registry, --role-arn an ECR account: give one")
    if values["registry_username"] and not environ.get(REGISTRY_PASSWORD_ENV):
        raise ConfigError(f"--registry-username needs the password in {REGISTRY_PASSWORD_ENV}")
    return EngineSettings(
        policy_path=values["policy"],
        concurrency=values["concurrency"],
        regions=values["region"],
        role_arns=values["role_arn"],
        external_id=values["external_id"],
        endpoint_url=values["endpoint_url"],
        kubeconfig=values["kubeconfig"],
        kube_contexts=values["kube_context"],
        registry=values["registry"],
        registry_username=values["registry_username"],
        registry_password=environ.get(REGISTRY_PASSWORD_ENV) or None,
        first_seen_file=values["first_seen_file"],
    )


def _run(
    values: Mapping[str, Any],
    namespace: argparse.Namespace,
    command: str,
    environ: Mapping[str, str],
) -> RunSettings | None:
    if command not in ("plan", "sweep"):
        return None
    repositories = tuple(namespace.repositories)
    chosen = _shard(values.get("shard"), values.get("shards"), environ)
    if chosen is not None and repositories:
        raise ConfigError("--shard splits the listed registry; do not also name repositories")
    return RunSettings(
        repositories=repositories,
        output=values["output"],
        apply=command == "sweep" and not values["dry_run"],
        audit_log=values.get("audit_log"),
        shard=chosen,
        metrics=_metrics(values),
        details=values["details"],
        yes=bool(values.get("yes")),
    )


def _metrics(values: Mapping[str, Any]) -> MetricsSettings | None:
    pushgateway, file = values.get("pushgateway"), values.get("metrics_file")
    if not (pushgateway or file):
        return None
    return MetricsSettings(pushgateway, file, values["metrics_job"])


def _shard(pinned: Shard | None, count: int | None, environ: Mapping[str, str]) -> Shard | None:
    """`--shard I/N`, or `--shards N` with the index from an Indexed Job's JOB_COMPLETION_INDEX."""
    if pinned is not None:
        return pinned
    if count is None:
        return None
    index = environ.get("JOB_COMPLETION_INDEX")
    if index is None:
        raise ConfigError("--shards needs JOB_COMPLETION_INDEX (an Indexed Job), or use --shard")
    try:
        return Shard(int(index), count)
    except ValueError:
        raise ConfigError(
            f"JOB_COMPLETION_INDEX={_shown(index)}: expected 0 <= index < --shards {count}"
        ) from None


def _serve(values: Mapping[str, Any], environ: Mapping[str, str]) -> ServeSettings:
    return ServeSettings(
        host=values["host"],
        port=values["port"],
        token_file=values["token_file"],
        insecure_no_auth=values["insecure_no_auth"],
        account=values["account"],
        audit_log=values["audit_log"],
        max_prunes=values["max_prunes"],
        debounce_s=values["debounce"],
        max_backlog=values["max_backlog"],
        dedupe_window_s=values["dedupe_window"],
        drain_timeout_s=values["drain_timeout"],
        queue_url=values["queue_url"],
    )


def _emulator(values: Mapping[str, Any]) -> EmulatorSettings:
    return EmulatorSettings(
        host=values["host"],
        port=values["port"],
        seed=values["seed"],
        latency_ms=values["latency_ms"],
        throttle=values["throttle"],
        error_rate=values["error_rate"],
    )


def load_token(settings: ServeSettings, environ: Mapping[str, str] = os.environ) -> str | None:
    """--token-file wins over CLEANER_TOKEN; no token at all is an error unless insecure.

    Read when the receiver starts (before it connects), not while parsing, so that the
    settings stay a description of the command line and the environment.
    """
    token_file, token = settings.token_file, environ.get(TOKEN_ENV)
    if token_file:
        try:
            token = Path(token_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            why = getattr(error, "strerror", None) or error
            raise ConfigError(f"--token-file {token_file}: {why}") from error
    token = token.strip() if token else None
    if token:
        return token
    if settings.insecure_no_auth:
        return None
    raise ConfigError(
        f"no token: set {TOKEN_ENV} or --token-file (or --insecure-no-auth for local use)"
    )
