"""The replaced script's algorithm, for comparison: list, then delete one image per call.

The CronJob ran `aws ecr list-images` and one `aws ecr batch-delete-image` per digest,
sequentially, repository after repository. Reproduced here with its digest-order bug fixed:
it deletes exactly what the sweep deleted from the twin repository (same images, same
digests), in the sweep's order (parents first), so both do the same work.

- Listing: ListImages without maxResults, as the CLI paginates by default: ECR then
  answers 100 ids a page.
- Deleting: BatchDeleteImage with one imageId per call.
- Retries: the project's retry loop (cleaner/clients/retry.py), generous and never running dry, so
  the baseline is not failed by throttling. No client-side rate control: the script had none.
- It stops between two deletions once `budget_s` is spent; the caller scales the time by
  the ratio of deletions.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from cleaner.clients.aws import is_transient, open_client
from cleaner.clients.retry import Backoff, retrying


async def run_baseline(
    url: str, twins: Sequence[tuple[str, Sequence[str]]], budget_s: float
) -> dict[str, Any]:
    """Run the script's algorithm over `(repository, digests to delete)` pairs."""
    calls: Counter[str] = Counter()
    deleted = repositories = 0
    async with open_client(
        "ecr",
        region="us-east-1",
        endpoint_url=url,
        access_key="bench",
        secret_key="bench",  # noqa: S106 - the emulator checks no credentials
    ) as client:
        started = time.perf_counter()
        deadline = started + budget_s
        for name, digests in twins:
            repositories += 1
            await _list(client, name, calls)
            for digest in digests:
                if time.perf_counter() >= deadline:
                    break
                await _call(client, "batch_delete_image", calls, repositoryName=name,
                            imageIds=[{"imageDigest": digest}])  # fmt: skip
                deleted += 1
            if time.perf_counter() >= deadline:
                break
        wall_s = time.perf_counter() - started
    return {
        "repositories": repositories,
        "deleted": deleted,
        "wall_s": wall_s,
        "api_calls": dict(calls),
    }


async def _list(client: Any, name: str, calls: Counter[str]) -> list[dict[str, str]]:
    ids: list[dict[str, str]] = []
    params: dict[str, Any] = {"repositoryName": name}
    while True:
        page = await _call(client, "list_images", calls, **params)
        ids.extend(page.get("imageIds", ()))
        if not page.get("nextToken"):
            return ids
        params["nextToken"] = page["nextToken"]


async def _call(client: Any, method: str, calls: Counter[str], **params: Any) -> dict[str, Any]:
    async def attempt() -> dict[str, Any]:
        calls[method] += 1
        result: dict[str, Any] = await getattr(client, method)(**params)
        return result

    return await retrying(attempt, retryable=is_transient, backoff=Backoff(), what=method)
