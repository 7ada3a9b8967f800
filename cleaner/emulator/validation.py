"""Everything the emulator rejects, worded like ECR where the wording is known.

botocore checks only types and minimums on the client, so maximums, combinations and
formats are the service's job (the ECR API reference's parameter constraints); these
checks run before any state changes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from cleaner.errors import PolicyError
from cleaner.planning.lifecycle import parse_policy_text
from cleaner.planning.names import REPOSITORY_NAME_PATTERN, is_repository_name

Body = dict[str, Any]
ImageId = Mapping[str, str]

DIGEST = re.compile(r"[a-zA-Z0-9-_+.]+:[a-fA-F0-9]+")
IMAGE_NOT_FOUND = "Requested image not found"
POLICY_INVALID = (
    "Invalid parameter at 'LifecyclePolicyText' failed to satisfy constraint: "
    "'Lifecycle policy validation failure: "
)
STATUSES = ("ACTIVE", "ARCHIVED", "ACTIVATING", "ANY")


class EcrError(Exception):
    """An ECR error response: `code` becomes `__type`; 500 is for ServerException only."""

    def __init__(self, code: str, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


class ImageFailure(Exception):
    """One item of a batch call failed; it becomes an entry of `failures`, not an error."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def invalid(message: str) -> EcrError:
    return EcrError("InvalidParameterException", message)


def check_repository_name(name: str) -> None:
    if not is_repository_name(name):
        raise invalid(
            "Invalid parameter at 'repositoryName' failed to satisfy constraint: "
            f"'must satisfy regular expression '{REPOSITORY_NAME_PATTERN}''"
        )


def check_tag(tag: str) -> None:
    if not 1 <= len(tag) <= 300:
        raise invalid(
            "Invalid parameter at 'imageTag' failed to satisfy constraint: "
            "'Member must have length between 1 and 300'"
        )


def check_image_id(image_id: ImageId) -> None:
    """Raise the per-item failure ECR reports for a malformed imageId."""
    digest, tag = image_id.get("imageDigest"), image_id.get("imageTag")
    if not digest and not tag:
        raise ImageFailure(
            "MissingDigestAndTag", "Invalid request parameters: both tag and digest cannot be null"
        )
    if digest and not DIGEST.fullmatch(digest):
        raise ImageFailure(
            "InvalidImageDigest",
            "Invalid request parameters: image digest should satisfy the regex "
            "'[a-zA-Z0-9-_+.]+:[a-fA-F0-9]+'",
        )
    if tag and len(tag) > 300:
        raise ImageFailure("InvalidImageTag", "Invalid request parameters: image tag too long")


# -- request parameters -------------------------------------------------------------------


def required(body: Body, key: str) -> Any:
    if body.get(key) in (None, ""):
        raise invalid(f"Missing required parameter in input: '{key}'")
    return body[key]


def max_results(body: Body, default: int, maximum: int) -> int:
    value = body.get("maxResults", default)
    if not isinstance(value, int) or value < 1:
        raise invalid(
            "Invalid parameter at 'maxResults' failed to satisfy constraint: "
            "'Member must have value greater than or equal to 1'"
        )
    if value > maximum:
        raise invalid(
            "Invalid parameter at 'maxResults' failed to satisfy constraint: "
            f"'Member must have value less than or equal to {maximum}'"
        )
    return value


def id_list(body: Body, key: str, *, paged: bool) -> list[Any] | None:
    """A 1..100 list parameter; with it, paged operations refuse nextToken/maxResults."""
    if key not in body:
        return None
    values = body[key]
    if not isinstance(values, list) or not values:
        raise invalid(
            f"Invalid parameter at '{key}' failed to satisfy constraint: "
            "'Member must have length greater than or equal to 1'"
        )
    if len(values) > 100:
        raise invalid(
            f"Invalid parameter at '{key}' failed to satisfy constraint: "
            "'Member must have length less than or equal to 100'"
        )
    if paged and ("nextToken" in body or "maxResults" in body):
        raise invalid(
            f"Invalid parameter: nextToken and maxResults cannot be provided when {key} is provided"
        )
    return values


def enum(value: Any, allowed: tuple[str, ...], name: str) -> str:
    if value not in allowed:
        raise invalid(
            f"Invalid parameter at '{name}' failed to satisfy constraint: "
            f"'Member must satisfy enum value set: [{', '.join(allowed)}]'"
        )
    return str(value)


def image_filter(body: Body) -> tuple[str, str]:
    """`filter` of DescribeImages/ListImages: (tagStatus, imageStatus) with ECR's defaults."""
    filt = body.get("filter") or {}
    tag_status = enum(
        filt.get("tagStatus", "ANY"), ("TAGGED", "UNTAGGED", "ANY"), "filter.tagStatus"
    )
    return tag_status, enum(filt.get("imageStatus", "ACTIVE"), STATUSES, "filter.imageStatus")


# -- lifecycle policy text ----------------------------------------------------------------


def check_policy_text(text: str) -> None:
    """ECR's length limits and schema basics, then the project's full validator if present."""
    if not 100 <= len(text) <= 30720:
        raise invalid(
            "Invalid parameter at 'LifecyclePolicyText' failed to satisfy constraint: "
            "'Member must have length between 100 and 30720'"
        )
    try:
        doc = json.loads(text)
    except ValueError:
        raise invalid(
            POLICY_INVALID + "Could not map policyString into LifecyclePolicy.'"
        ) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("rules"), list):
        raise invalid(POLICY_INVALID + 'object has missing required properties (["rules"])\'')
    # The rules ECR's documentation states, checked by the project's own parser: the
    # emulator then agrees with the validator by construction, so the tests against moto
    # (an independent implementation) are what hold that parser to ECR.
    try:
        parse_policy_text(text)
    except PolicyError as e:
        raise invalid(POLICY_INVALID + f"{e}'") from None
