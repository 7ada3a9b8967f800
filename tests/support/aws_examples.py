"""The six worked examples of the AWS lifecycle-policy documentation ("Examples of
lifecycle policies in Amazon ECR",
docs.aws.amazon.com/AmazonECR/latest/userguide/lifecycle_policy_examples.html).

Each repository is (name, tags, age); ages are hours before "now". Where the documentation
says two images are both "1 day" old but the result needs one to be newer (ALL-B: D and E),
the newer one gets the smaller age, as the facts file explains; E must also be under a day
old, since a 1-day `sinceImagePushed` rule does not expire it.
"""

from __future__ import annotations

from typing import Any

D = 24  # hours


def rule(priority: int, status: str, count: str, number: int, **selection: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "tagStatus": status,
        **selection,
        "countType": count,
        "countNumber": number,
    }
    if count != "imageCountMoreThan":
        body["countUnit"] = "days"
    return {
        "rulePriority": priority,
        "description": f"Rule {priority}",
        "selection": body,
        "action": {"type": "expire"},
    }


MA_REPO = [
    ("A", ["beta-1", "prod-1"], 10 * D),
    ("B", ["beta-2", "prod-2"], 9 * D),
    ("C", ["beta-3"], 8 * D),
]
TA_REPO = [
    ("A", ["alpha-1"], 12 * D),
    ("B", ["beta-1"], 11 * D),
    ("C", ["alpha-2", "beta-2"], 10 * D),
    ("D", ["alpha-3"], 4 * D),
    ("E", ["beta-3"], 3 * D),
    ("F", ["alpha-4", "beta-4"], 2 * D),
]

EXAMPLES: list[tuple[str, list[tuple[str, list[str], int]], list[dict[str, Any]], set[str]]] = [
    (
        "M-A: prod rule first expires only A",
        MA_REPO,
        [
            rule(1, "tagged", "imageCountMoreThan", 1, tagPatternList=["prod*"]),
            rule(2, "tagged", "imageCountMoreThan", 1, tagPatternList=["beta*"]),
        ],
        {"A"},
    ),
    (
        "M-B: beta rule first expires A and B",
        MA_REPO,
        [
            rule(1, "tagged", "imageCountMoreThan", 1, tagPatternList=["beta*"]),
            rule(2, "tagged", "imageCountMoreThan", 1, tagPatternList=["prod*"]),
        ],
        {"A", "B"},
    ),
    (
        "T-A: patterns in one rule are ANDed",
        TA_REPO,
        [rule(1, "tagged", "sinceImagePushed", 5, tagPatternList=["alpha*", "beta*"])],
        {"C"},
    ),
    (
        "T-B: tags are not exclusive",
        [
            ("A", ["alpha-1", "beta-1", "gamma-1"], 10 * D),
            ("B", ["alpha-2", "beta-2"], 9 * D),
            ("C", ["alpha-3", "beta-3", "gamma-2"], 8 * D),
        ],
        [rule(1, "tagged", "imageCountMoreThan", 1, tagPatternList=["alpha*", "beta*"])],
        {"A", "B"},
    ),
    (
        "ALL-A: any keeps the newest one",
        [
            ("A", ["alpha-1"], 4 * D),
            ("B", ["beta-1"], 3 * D),
            ("C", [], 2 * D),
            ("D", ["alpha-2"], 1 * D),
        ],
        [rule(1, "any", "imageCountMoreThan", 1)],
        {"A", "B", "C"},
    ),
    (
        "ALL-B: all rule types combined",
        [
            ("A", ["alpha-1", "beta-1"], 4 * D),
            ("B", [], 3 * D),
            ("C", ["alpha-2"], 2 * D),
            ("D", ["git-hash"], 23),
            ("E", [], 22),
        ],
        [
            rule(1, "tagged", "imageCountMoreThan", 1, tagPatternList=["alpha*"]),
            rule(2, "untagged", "sinceImagePushed", 1),
            rule(3, "any", "imageCountMoreThan", 1),
        ],
        {"A", "B", "D"},
    ),
]
