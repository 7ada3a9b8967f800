"""How fast `--output html` renders and opens: `bench/html_report.py [--images N] [--runs R]`.

Renders a planned synthetic run (tests/support/reports.py), then opens it R times in
headless Chromium (tests/support/chromium.py) and prints the medians as JSON:
- `render_s`: Python time to write the page; `size_mb`: its size;
- `load_ms`: navigation start to the load event, from the page's Navigation Timing entry
  (https://www.w3.org/TR/navigation-timing-2/), which ends after the script has drawn the
  first page of the table;
- `drawn_ms`: when the script marked the table drawn (`performance.mark`);
- `filter_ms`: choosing one repository and drawing its first page, timed inside the page.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make `cleaner` and `tests` importable
    sys.path.insert(0, str(ROOT))

from cleaner.reports.html import render_html  # noqa: E402
from tests.support.chromium import chromium  # noqa: E402
from tests.support.reports import NOW, synthetic_report  # noqa: E402

TIMING = """(() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const drawn = performance.getEntriesByName('decisions-drawn')[0];
  return {load: nav.loadEventEnd, drawn: drawn.startTime};
})()"""
FILTER = """(() => {
  const s = document.getElementById('repository');
  const started = performance.now();
  s.value = s.options[1].value;
  s.dispatchEvent(new Event('change'));
  return performance.now() - started;
})()"""


async def run_html(images: int, repositories: int, runs: int) -> dict[str, Any]:
    report = synthetic_report(repositories, images // repositories)
    renders, page = [], ""
    for _ in range(runs):
        started = time.perf_counter()
        page = render_html(report, NOW)
        renders.append(time.perf_counter() - started)
    loads, drawn, filters = [], [], []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "plan.html"
        path.write_text(page, encoding="utf-8")
        async with chromium() as tab:
            await tab.send("Page.enable")
            for _ in range(runs):
                tab.events.clear()
                await tab.send("Page.navigate", url=path.as_uri())
                await tab.event("Page.loadEventFired")
                timing = await tab.evaluate(TIMING)
                loads.append(timing["load"])
                drawn.append(timing["drawn"])
                filters.append(await tab.evaluate(FILTER))
    return {
        "images": repositories * (images // repositories),
        "repositories": repositories,
        "runs": runs,
        "render_s": round(statistics.median(renders), 3),
        "size_mb": round(len(page.encode()) / 2**20, 2),
        "load_ms": round(statistics.median(loads)),
        "drawn_ms": round(statistics.median(drawn)),
        "filter_ms": round(statistics.median(filters), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--repositories", type=int, default=40)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run_html(args.images, args.repositories, args.runs))))


if __name__ == "__main__":
    main()
