"""ECR's repository-name grammar, written once for the receiver, its OpenAPI document and
the emulator.

The pattern and the lengths are those of `repositoryName` in the ECR API reference
(CreateRepository: 2-256 characters of
`(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*`), with the separators
DescribeRepositories accepts (`__` and runs of `-`). Written without capture groups, so one
regex serves Python and JSON Schema alike.
"""

from __future__ import annotations

import re

REPOSITORY_NAME_MIN, REPOSITORY_NAME_MAX = 2, 256
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
REPOSITORY_NAME_PATTERN = rf"{_COMPONENT}(?:/{_COMPONENT})*"
_REPOSITORY_NAME = re.compile(REPOSITORY_NAME_PATTERN)


def is_repository_name(name: object) -> bool:
    """2-256 characters of the pattern (slashes allowed: `team/app`)."""
    return (
        isinstance(name, str)
        and REPOSITORY_NAME_MIN <= len(name) <= REPOSITORY_NAME_MAX
        and _REPOSITORY_NAME.fullmatch(name) is not None
    )
