"""Durations and sizes, parsed and written one way for the policy file, reasons and reports."""

from __future__ import annotations

import re
from datetime import timedelta
from fractions import Fraction

MAX_DAYS = 36_500
"""The longest age a policy may name, 100 years: ECR launched in 2015, so no image is older,
and a bound keeps every cutoff (`now` minus the age) a valid date."""
# Largest unit first, each at most once, optionally spaced: `1w`, `2d12h`, `1h30m`, `5h 2s`,
# `1.5h`. Go's time.ParseDuration and the other cleaners' `2d3h6m` read the same way; the
# order rule only refuses spellings such as `30m1h` that are more likely a slip.
# ASCII digits and a plain space only (Python's \d and \s also match other scripts' digits
# and spaces); DURATION_PATTERN is the same grammar without group names, as the policy
# file's JSON Schema states it.
_NUMBER = r"[0-9]{1,12}(?:\.[0-9]{1,6})?"
_UNITS = "wdhms"
DURATION_PATTERN = "(?=[0-9])" + " ?".join(f"(?:{_NUMBER}{unit})?" for unit in _UNITS)
_DURATION = re.compile(
    "(?=[0-9])" + " ?".join(f"(?:(?P<{unit}>{_NUMBER}){unit})?" for unit in _UNITS)
)
_FORMAT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_UNIT_SECONDS = {"w": 7 * 86400, **_FORMAT_SECONDS}
_SIZE_UNITS = ("KiB", "MiB", "GiB", "TiB")


def parse_duration(text: object) -> timedelta:
    """`90s`, `15m`, `2h`, `30d`, `1w`, compounds such as `2d12h` or `1h30m`, and decimals
    such as `1.5h` (to the microsecond); ValueError otherwise."""
    match = _DURATION.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None or not match[0]:
        shown = repr(text)[:40]
        raise ValueError(f"not a duration: {shown} (use e.g. 90s, 15m, 2h, 30d, 1w, 1h30m)")
    # Exact decimal arithmetic: 1.1h is 3960 s, not 3960.0000000000005.
    parts = ((unit, count) for unit, count in match.groupdict().items() if count)
    seconds = sum((Fraction(count) * _UNIT_SECONDS[unit] for unit, count in parts), Fraction(0))
    if seconds > MAX_DAYS * _UNIT_SECONDS["d"]:
        raise ValueError(f"{match[0]} is longer than {MAX_DAYS} days")
    return timedelta(microseconds=int(seconds * 1_000_000))


def format_duration(delta: timedelta, *, units: int = 2) -> str:
    """The largest unit and, with `units=2`, the next one when it is not zero, rounded
    down: `1d4h`, `1d`, `5m30s`, `0s`; negative durations get a `-`."""
    seconds = int(delta.total_seconds())
    sign, seconds = ("-", -seconds) if seconds < 0 else ("", seconds)
    parts: list[str] = []
    for unit, size in _FORMAT_SECONDS.items():
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
