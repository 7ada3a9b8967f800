"""Run reports for the renderers' tests, planned by the real planner from synthetic CI
histories (deterministic for a seed)."""

from __future__ import annotations

import hashlib
import random
from datetime import UTC, datetime, timedelta

from cleaner.planning.lifecycle import parse_policy
from cleaner.planning.model import DeleteFailure, Image, RepositoryReport, RunReport
from cleaner.planning.planner import plan_repository
from cleaner.planning.protections import Protections

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
RULES = parse_policy(
    {
        "rules": [
            {
                "rulePriority": 1,
                "description": "keep the 5 newest releases",
                "selection": {
                    "tagStatus": "tagged",
                    "tagPatternList": ["v*"],
                    "countType": "imageCountMoreThan",
                    "countNumber": 5,
                },
                "action": {"type": "expire"},
            },
            {
                "rulePriority": 2,
                "description": "untagged leftovers go after a day",
                "selection": {
                    "tagStatus": "untagged",
                    "countType": "sinceImagePushed",
                    "countUnit": "days",
                    "countNumber": 1,
                },
                "action": {"type": "expire"},
            },
            {
                "rulePriority": 3,
                "description": "keep the 30 newest of everything else",
                "selection": {
                    "tagStatus": "any",
                    "countType": "imageCountMoreThan",
                    "countNumber": 30,
                },
                "action": {"type": "expire"},
            },
        ]
    }
)


def history(name: str, count: int, rng: random.Random, now: datetime = NOW) -> list[Image]:
    """`count` pushes over 120 days: CI builds, untagged leftovers and releases."""
    images = []
    for i in range(count):
        age = timedelta(hours=rng.uniform(0, 120 * 24))
        kind = rng.random()
        tags: tuple[str, ...] = ()
        if kind < 0.1:
            tags = (f"v{i // 10}.{i % 10}.0",)
        elif kind < 0.7:
            tags = (f"main-{hashlib.sha1(f'{name}{i}'.encode()).hexdigest()[:7]}",)  # noqa: S324
        digest = "sha256:" + hashlib.sha256(f"{name}/{i}".encode()).hexdigest()
        size = rng.randint(20, 400) * 1024 * 1024
        images.append(Image(digest, tags, now - age, size=size))
    return images


def synthetic_report(
    repositories: int = 4,
    images: int = 50,
    *,
    dry_run: bool = True,
    seed: int = 1,
    now: datetime = NOW,
    prefix: str = "team",
) -> RunReport:
    """`repositories` repositories of `images` images each, planned; after a sweep
    (dry_run False) every expired image counts as deleted but one, which failed."""
    rng = random.Random(seed)
    reports = []
    for r in range(repositories):
        name = f"{prefix}-{r:02d}/service"
        plan = plan_repository(
            name, history(name, images, rng, now), RULES, now, Protections(tags=("prod",))
        )
        expired = [d.image.digest for d in plan.expire]
        if dry_run or not expired:
            reports.append(RepositoryReport(name, plan))
            continue
        failed = (DeleteFailure(expired[0], "KmsError", "the key is disabled"),)
        reports.append(RepositoryReport(name, plan, deleted=tuple(expired[1:]), failed=failed))
    return RunReport(dry_run=dry_run, repositories=tuple(reports))
