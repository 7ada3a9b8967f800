"""Small validators shared by the lifecycle parser and the policy-file parser.

Each raises PolicyError prefixed with a location (`policy.yaml: repositories[1]`), so every
message names the entry at fault, and renders bad values as the user wrote them.

`Problems` gathers what the independent parts of a document get wrong (each section, entry,
rule and protection), so that `validate` names every mistake in a file at once instead of one
per run. Within one part the first problem ends that part: the checks after it would
mostly repeat it.
"""

from __future__ import annotations

import difflib
import enum
import json
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import NoReturn, ParamSpec, TypeVar

from cleaner.errors import PolicyError

E = TypeVar("E", bound=enum.StrEnum)
T = TypeVar("T")
P = ParamSpec("P")


class Problems:
    """Problems found so far in one part of a policy; `with Problems() as problems:` raises
    one PolicyError holding all of them when the block ends (or when a check in it fails
    outright), and nothing when there were none."""

    def __init__(self) -> None:
        self.found: list[str] = []

    def note(self, loc: str, message: str) -> None:
        """A problem that does not stop the checks after it (an unknown key)."""
        self.found.append(f"{loc}: {message}")

    def attempt(self, default: T, check: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """`check(*args)`, or `default` after recording why it failed. The default only
        lets the remaining checks run: the block raises when it ends."""
        try:
            return check(*args, **kwargs)
        except PolicyError as error:
            self.found.extend(error.problems)
            return default

    def __enter__(self) -> Problems:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if isinstance(error, PolicyError):
            self.found.extend(error.problems)
        elif error is not None:
            return
        if self.found:
            raise PolicyError.gathered(self.found) from None


def mapping(
    value: object,
    loc: str,
    what: str | None,
    allowed: Iterable[str],
    *,
    required: Iterable[str],
    problems: Problems | None = None,
) -> Mapping[str, object]:
    """`value` as an object with only `allowed` keys and every `required` one.

    Unknown keys are noted in `problems` (when given) and the checks go on; a missing key
    fails, unless an unknown key is its likely misspelling, which already says so.
    `what` names the object in messages when `loc` does not already end with its name.
    """
    if not isinstance(value, dict):
        fail(loc, f"{what + ' ' if what else ''}must be an object, got {show(value)}")
    allowed = tuple(allowed)
    found = Problems() if problems is None else problems
    guesses: set[str] = set()
    for key in sorted(str(key) for key in value if key not in allowed):
        guess = difflib.get_close_matches(key, allowed, n=1)
        hint = f': did you mean "{guess[0]}"? (allowed: ' if guess else " (allowed: "
        guesses.update(guess)
        unknown = f"{what} has unknown key" if what else "unknown key"
        found.note(loc, f'{unknown} "{show_key(key)}"{hint}{", ".join(allowed)})')
    if problems is not None and any(key not in value for key in guesses.intersection(required)):
        # A required key spelled wrong: the note above says so; nothing more to check here.
        raise _Noted(loc)
    missing = [key for key in required if key not in value and key not in guesses]
    if missing:
        quoted = ", ".join(f'"{key}"' for key in missing)
        keys = "key" if len(missing) == 1 else "keys"
        message = f"{what + ' is ' if what else ''}missing required {keys} {quoted}"
        if problems is not None:  # the caller's `with problems:` adds it to the others
            fail(loc, message)
        found.note(loc, message)
    if found.found and problems is None:
        raise PolicyError.gathered(found.found)
    return value


class _Noted(PolicyError):
    """Ends the checks of one object whose problems are already in the caller's Problems."""

    def __init__(self, loc: str) -> None:
        super().__init__(f"{loc}: see the problems noted")
        self.problems = ()


def show_key(key: str) -> str:
    return key if len(key) <= SHOWN_MAX else key[: SHOWN_MAX - 3] + "..."


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
