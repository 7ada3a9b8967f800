"""Policy files several tests share: "keep the N newest images" is the rule most of them need."""

from __future__ import annotations

from typing import Any

from cleaner.planning.policy_file import PolicyFile, parse_policy_file


def keep_newest_rule(count: int) -> dict[str, Any]:
    """An ECR rule expiring every image but the `count` most recently pushed."""
    return {
        "rulePriority": 1,
        "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": count},
        "action": {"type": "expire"},
    }


def keep_newest_everywhere(count: int) -> PolicyFile:
    """`keep_newest_rule` for every repository, with no grace period and no cluster lookups:
    a test's images are pushed seconds before it plans, and it runs no cluster."""
    return parse_policy_file(
        {
            "repositories": [{"match": "*", "rules": [keep_newest_rule(count)]}],
            "protect": {"newer_than": "0s", "in_use": False},
        }
    )
