"""Durations and sizes, parsed and written one way for the policy file, reasons and reports."""

from __future__ import annotations

import re
from datetime import timedelta

MAX_DAYS = 36_500
"""The longest age a policy may name, 100 years: ECR launched in 2015, so no image is older,
and a bound keeps every cutoff (`now` minus the age) a valid date."""
_DURATION = re.compile(r"(\d{1,12})([smhd])")
_UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_SIZE_UNITS = ("KiB", "MiB", "GiB", "TiB")


def parse_duration(text: object) -> timedelta:
    """`90s`, `15m`, `2h`, `30d`; ValueError otherwise."""
    match = _DURATION.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        shown = repr(text)[:40]
        raise ValueError(f"not a duration: {shown} (use e.g. 90s, 15m, 2h, 30d)")
    seconds = int(match[1]) * _UNIT_SECONDS[match[2]]
    if seconds > MAX_DAYS * _UNIT_SECONDS["d"]:
        raise ValueError(f"{match[0]} is longer than {MAX_DAYS} days")
    return timedelta(seconds=seconds)


def format_duration(delta: timedelta, *, units: int = 2) -> str:
    """The largest unit and, with `units=2`, the next one when it is not zero, rounded
    down: `1d4h`, `1d`, `5m30s`, `0s`; negative durations get a `-`."""
    seconds = int(delta.total_seconds())
    sign, seconds = ("-", -seconds) if seconds < 0 else ("", seconds)
    parts: list[str] = []
    for unit, size in _UNIT_SECONDS.items():
        if len(parts) == units:
            break
        count, seconds = divmod(seconds, size)
        if count or parts:
            parts.append(f"{count}{unit}" if count else "")
    return sign + ("".join(parts) or "0s")


def format_bytes(size: int) -> str:
    """Binary units, one decimal from KiB up to TiB: `512 B`, `1.5 MiB`, `2.0 TiB`."""
    if abs(size) < 1024:
        return f"{size} B"
    value = float(size)
    for unit in _SIZE_UNITS:
        value /= 1024
        if abs(value) < 1024 or unit == _SIZE_UNITS[-1]:
            break
    return f"{value:.1f} {unit}"
