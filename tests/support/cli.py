"""The CLI in this event loop, the way `ecr-cleaner` runs it, minus the process."""

from __future__ import annotations

import io

from cleaner.cli import dispatch, usage_error
from cleaner.errors import ConfigError
from cleaner.settings import parse_args


async def run_cli(*argv: str) -> tuple[int, str]:
    """Run one CLI command; returns (exit code, stdout). Settings errors exit 2, as in main."""
    out = io.StringIO()
    try:
        settings = parse_args(list(argv))
    except ConfigError as error:
        return usage_error(error), ""
    return await dispatch(settings, out), out.getvalue()
