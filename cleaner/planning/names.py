"""Name grammars written once: ECR repository names (for the receiver, its OpenAPI
document and the emulator), and the AWS regions and role ARNs flags and policy files name.

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


# Region codes as AWS lists them (us-east-1, ap-southeast-5, us-gov-west-1); IAM role ARNs
# as the IAM User Guide's "IAM identifiers" page writes them, in every partition.
_REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-\d{1,2}")
_ROLE_ARN = re.compile(r"arn:aws(?:-[a-z]+)*:iam::(\d{12}):role/[\w+=,.@/-]{1,512}", re.ASCII)


# STS AssumeRole's ExternalId: 2-1224 characters of this alphabet (STS API reference).
_EXTERNAL_ID = re.compile(r"[\w+=,.@:/-]{2,1224}", re.ASCII)


def is_external_id(value: object) -> bool:
    return isinstance(value, str) and _EXTERNAL_ID.fullmatch(value) is not None


def is_region(name: object) -> bool:
    return isinstance(name, str) and _REGION.fullmatch(name) is not None


def is_role_arn(arn: object) -> bool:
    return isinstance(arn, str) and _ROLE_ARN.fullmatch(arn) is not None


def account_of(role_arn: str) -> str:
    """The 12-digit account a role ARN is in; "" for anything that is not one."""
    found = _ROLE_ARN.fullmatch(role_arn)
    return found.group(1) if found else ""


# An OCI registry's base: the spec's endpoints all start at `/v2/` under the host, so the
# URL is a scheme, a host and maybe a port, nothing else.
REGISTRY_URL_PATTERN = r"^https?://[A-Za-z0-9.-]+(?::[0-9]{1,5})?/?$"
_REGISTRY_URL = re.compile(r"https?://[A-Za-z0-9.-]+(?::[0-9]{1,5})?")


def registry_url(value: str) -> str:
    """`http(s)://HOST[:PORT]`, a trailing slash dropped; ValueError for anything else."""
    text = value.strip().rstrip("/")
    if not _REGISTRY_URL.fullmatch(text):
        raise ValueError("expected http(s)://HOST[:PORT] (the registry's base, no path)")
    return text
