"""Log lines on stderr: text for people, or one JSON object per line for log shippers.

With `--log-format json` every `extra=` field of a record becomes a key, so a deletion's
`audit` object reaches CloudWatch Logs or Loki whole, from the receiver and the sweep alike.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # rich is imported by whoever draws; `--help` need not load it
    from rich.console import Console

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Libraries whose INFO lines say nothing a user acts on ("Found credentials in environment
# variables."); they speak from WARNING up unless --log-level DEBUG asks for everything.
CHATTY = ("botocore", "aiobotocore", "kubernetes_asyncio")
# Attributes every LogRecord has; anything else on a record came in through `extra=`.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        doc.update((k, v) for k, v in record.__dict__.items() if k not in _STANDARD)
        if record.exc_info:
            doc["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            doc["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(doc, default=str, ensure_ascii=False)


def formatter_for(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def configure_logging(level: str, log_format: str) -> None:
    """Install the stderr handler at `level`, in `log_format` (the CLI does, once)."""
    logging.basicConfig(level=level, stream=sys.stderr, format=TEXT_FORMAT)
    use_log_format(log_format)
    for name in CHATTY:
        logging.getLogger(name).setLevel(logging.NOTSET if level == "DEBUG" else logging.WARNING)
    # A role that cannot be assumed is logged by botocore with a traceback on every call that
    # tries; the cleaner reports it once, in its own words, against the target.
    for name in ("botocore.credentials", "aiobotocore.credentials"):
        logging.getLogger(name).setLevel(logging.NOTSET if level == "DEBUG" else logging.ERROR)


class ConsoleHandler(logging.Handler):
    """Writes log lines through a rich console, above whatever it is drawing (a progress
    bar), in the format of the handler it stands in for."""

    def __init__(self, console: Console, like: logging.Handler) -> None:
        super().__init__(like.level)
        self.console = console
        self.setFormatter(like.formatter or logging.Formatter(TEXT_FORMAT))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            self.console.print(line, markup=False, highlight=False, emoji=False, soft_wrap=True)
        except Exception:  # a log line must never break the run
            self.handleError(record)


@contextmanager
def logs_through(console: Console, logger: logging.Logger | None = None) -> Iterator[None]:
    """While inside, the stderr handlers of `logger` (default: root) write through
    `console`, so a progress bar it draws is never torn by a log line."""
    logger = logger or logging.getLogger()
    swapped = [
        (handler, ConsoleHandler(console, handler))
        for handler in logger.handlers
        if type(handler) is logging.StreamHandler and handler.stream in (sys.stderr, sys.__stderr__)
    ]
    for old, new in swapped:
        logger.removeHandler(old)
        logger.addHandler(new)
    try:
        yield
    finally:
        for old, new in swapped:
            logger.removeHandler(new)
            logger.addHandler(old)


def use_log_format(log_format: str, logger: logging.Logger | None = None) -> None:
    """Give the console handlers of `logger` (default: root) this format.

    Only the formatter of a plain stderr/stdout handler is swapped, so handlers that others
    installed (pytest's capture, say) stay as they are.
    """
    logger = logger or logging.getLogger()
    for handler in logger.handlers:
        stream = getattr(handler, "stream", None)
        if type(handler) is logging.StreamHandler and stream in (sys.stderr, sys.stdout):
            handler.setFormatter(formatter_for(log_format))
