"""The README's picture: `plan --output html` over the demo registry, shot in headless
Chromium. `make screenshot` writes docs/plan-report.png."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cleaner.cli import dispatch  # noqa: E402
from cleaner.emulator import RegistryStore, running, seed_demo  # noqa: E402
from cleaner.settings import parse_args  # noqa: E402
from tests.support.chromium import FLAGS, chromium_binary  # noqa: E402


async def demo_plan_html() -> str:
    store = RegistryStore()
    seed_demo(store, datetime.now(UTC))
    async with running(store) as url:
        os.environ.update(
            AWS_ENDPOINT_URL_ECR=url, AWS_REGION=store.region,
            AWS_ACCESS_KEY_ID="demo", AWS_SECRET_ACCESS_KEY="demo",  # noqa: S106 - any key does
        )  # fmt: skip
        policy = str(ROOT / "cleaner/data/demo-policy.yaml")
        settings = parse_args(["plan", "--policy", policy, "--output", "html"])
        out = io.StringIO()
        assert await dispatch(settings, out) == 0  # noqa: S101 - a script, not a check
    return out.getvalue()


def main(target: str) -> None:
    page = asyncio.run(demo_plan_html())
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "plan.html"
        path.write_text(page, encoding="utf-8")
        flags = [flag for flag in FLAGS if not flag.startswith("--remote-debugging")]
        subprocess.run(  # noqa: S603 - our own arguments
            [chromium_binary(), *flags, f"--user-data-dir={folder}/profile",
             "--window-size=1280,1100", "--hide-scrollbars",
             f"--screenshot={Path(target).resolve()}", path.as_uri()],
            check=True, capture_output=True,
        )  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/plan-report.png")
