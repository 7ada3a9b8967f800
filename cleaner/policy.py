"""The policy file: which lifecycle rules apply to which repository.

Parsing happens here, once, at the edge; everything after works on frozen, validated data.
A bare ECR lifecycle document (`{"rules": [...]}`) is a complete policy file that applies to
every repository.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from cleaner.errors import PolicyError
from cleaner.lifecycle import parse_policy
from cleaner.model import LifecyclePolicy


@dataclass(frozen=True, slots=True)
class RepositoryEntry:
    """One `repositories:` entry: the globs it matches and the rules it applies."""

    match: tuple[str, ...]
    lifecycle: LifecyclePolicy

    def matches(self, repository: str) -> bool:
        return any(fnmatch.fnmatchcase(repository, pattern) for pattern in self.match)


@dataclass(frozen=True, slots=True)
class PolicyFile:
    entries: tuple[RepositoryEntry, ...]
    source: str = "policy"

    def entry_for(self, repository: str) -> RepositoryEntry | None:
        """The first entry whose globs match; None means: leave the repository alone."""
        return next((e for e in self.entries if e.matches(repository)), None)


def load_policy_file(path: str | Path) -> PolicyFile:
    """Read and validate a policy file (YAML or JSON); PolicyError names what is wrong."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise PolicyError(f"{path}: cannot read: {error.strerror or error}") from error
    return parse_policy_file(decode(text, str(path)), str(path))


def decode(text: str, source: str) -> object:
    """JSON when it parses as JSON, YAML otherwise (YAML's errors point at line and column)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise PolicyError(f"{source}: not valid YAML or JSON: {_one_line(error)}") from error


def _one_line(error: yaml.YAMLError) -> str:
    """YAML's messages span several lines with a caret drawing; an error here is one line."""
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    mark = getattr(error, "problem_mark", None)
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark else problem


def parse_policy_file(doc: object, source: str = "policy") -> PolicyFile:
    if not isinstance(doc, dict):
        raise PolicyError(f"{source}: expected a mapping with 'rules', got {type(doc).__name__}")
    lifecycle = parse_policy(doc, where=source)
    return PolicyFile(entries=(RepositoryEntry(("*",), lifecycle),), source=source)
