"""JSON and YAML documents read strictly: text in, plain values out, or one-line PolicyError.

A policy file decides what is deleted, so the loader refuses what would change its meaning
silently or cost without bound:
- a key given twice in one mapping (YAML and JSON both let the last one win, which can drop
  a `protect:` block or widen a `match:`);
- YAML anchors and aliases (`&a`, `*a`): nine nested aliases in 500 bytes expand to a billion
  values ("billion laughs"), and nothing a policy says needs them;
- anything a parser raises on hostile input (numbers beyond Python's 4,300-digit limit,
  nesting deeper than the interpreter's stack, text that is not UTF-8) becomes a PolicyError
  instead of a traceback.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from cleaner.errors import PolicyError


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader (no object construction) minus aliases and duplicate keys."""

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent):
            raise _located("aliases (*name) are not allowed in a policy file", event.start_mark)
        if getattr(event, "anchor", None):
            raise _located("anchors (&name) are not allowed in a policy file", event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, list | dict):
                continue  # unhashable: SafeLoader refuses it with its own message below
            if key in seen:
                raise _located(
                    f"duplicate key {json.dumps(key, default=str)[:60]}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _located(problem: str, mark: Any) -> yaml.MarkedYAMLError:
    return yaml.MarkedYAMLError(problem=problem, problem_mark=mark)


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise ValueError(f"duplicate key {json.dumps(key)[:60]}")
        found[key] = value
    return found


def load_json(text: str, source: str) -> Any:
    """Strict JSON; `json.JSONDecodeError` when the text is not JSON at all."""
    try:
        return json.loads(text, object_pairs_hook=_refuse_duplicates)
    except json.JSONDecodeError:
        raise
    except (ValueError, RecursionError, MemoryError) as error:
        raise PolicyError(f"{source}: {_json_problem(error)}") from None


def _json_problem(error: BaseException) -> str:
    if isinstance(error, RecursionError):
        return "the document nests too deeply"
    if isinstance(error, MemoryError):
        return "the document is too large"
    text = str(error)
    if text.startswith("duplicate key"):
        return text
    return "a number is too long (more than 4300 digits)"


def load_yaml(text: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as error:
        raise PolicyError(f"{source}: not valid YAML or JSON: {_one_line(error)}") from None
    except (ValueError, OverflowError) as error:  # int() of a 5,000-digit scalar, say
        raise PolicyError(f"{source}: not valid YAML: {str(error)[:80]}") from None
    except RecursionError:
        raise PolicyError(f"{source}: the document nests too deeply") from None
    except MemoryError:
        raise PolicyError(f"{source}: the document is too large") from None


def decode(text: str, source: str) -> Any:
    """JSON when it parses as JSON, YAML otherwise (YAML's errors point at line and column)."""
    try:
        return load_json(text, source)
    except json.JSONDecodeError:
        return load_yaml(text, source)


def _one_line(error: yaml.YAMLError) -> str:
    """YAML's messages span several lines with a caret drawing; an error here is one line."""
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    mark = getattr(error, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    return f"{str(problem)[:120]}{where}"


def read_text(path: str, source: str) -> str:
    """A file's text, UTF-8; PolicyError when it cannot be read or is not text."""
    try:
        with open(path, encoding="utf-8") as stream:
            return stream.read()
    except UnicodeDecodeError:
        raise PolicyError(f"{source}: not UTF-8 text") from None
    except OSError as error:
        raise PolicyError(f"{source}: cannot read: {error.strerror or error}") from error
