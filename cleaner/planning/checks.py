"""Small validators shared by the lifecycle parser and the policy-file parser.

Each raises PolicyError prefixed with a location (`policy.yaml: repositories[1]`), so every
message names the entry at fault, and renders bad values as the user wrote them.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Mapping
from typing import NoReturn, TypeVar

from cleaner.errors import PolicyError

E = TypeVar("E", bound=enum.StrEnum)


def mapping(
    value: object, loc: str, what: str, allowed: Iterable[str], *, required: Iterable[str]
) -> Mapping[str, object]:
    if not isinstance(value, dict):
        fail(loc, f"{what} must be an object, got {show(value)}")
    allowed = tuple(allowed)
    unknown = sorted(str(key) for key in value if key not in allowed)
    if unknown:
        fail(loc, f'{what} has unknown key "{unknown[0]}" (allowed: {", ".join(allowed)})')
    for key in required:
        if key not in value:
            fail(loc, f'{what} is missing required key "{key}"')
    return value


MAX_COUNT = 2**31 - 1
"""The largest count a policy may hold: ECR's own integers (countNumber, rulePriority) are
32-bit, and bounding every count keeps what `validate` accepts plannable."""


def positive_int(value: object, loc: str, field: str, maximum: int = MAX_COUNT) -> int:
    # bool is a subclass of int in Python, but `true` is not an integer in JSON.
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        fail(loc, f"{field} must be a positive integer, got {show(value)}")
    if value > maximum:
        fail(loc, f"{field} must be at most {maximum}, got {show(value)}")
    return value


def enum_value(value: object, kind: type[E], loc: str, field: str) -> E:
    allowed = tuple(member.value for member in kind)
    if not isinstance(value, str) or value not in allowed:
        fail(loc, f"{field} must be {choices(allowed)}, got {show(value)}")
    return kind(value)


def choices(values: Iterable[str]) -> str:
    return " or ".join(f'"{v}"' for v in values)


SHOWN_MAX = 60


def show(value: object) -> str:
    """Render a bad value as JSON, so `null`, `true` and `"5"` read as the user wrote them.

    Encoded lazily and cut at SHOWN_MAX characters: a value that expands to gigabytes costs
    no more than its first few chunks.
    """
    text = ""
    try:
        for chunk in _ENCODER.iterencode(value):
            text += chunk
            if len(text) > SHOWN_MAX:
                break
    except (TypeError, ValueError, RecursionError):  # not JSON, a 5,000-digit int, a cycle
        text = text or _short_repr(value)
    return text if len(text) <= SHOWN_MAX else text[: SHOWN_MAX - 3] + "..."


_ENCODER = json.JSONEncoder(check_circular=True, default=None)


def _short_repr(value: object) -> str:
    if isinstance(value, int):
        return "a number too long to show"
    return f"a {type(value).__name__}"


def fail(loc: str, message: str) -> NoReturn:
    raise PolicyError(f"{loc}: {message}")
