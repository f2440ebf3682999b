"""Web page benchmark: the page's own asset size and its first render from localhost.

Serves the bundled models on a loopback port, loads ``/`` in headless Chromium (Debian's
``chromium`` + ``chromium-driver``) ``--loads`` times on one browser (the first load cold, the
rest with the browser's cache as a returning visitor has it) and prints the medians of the
Navigation Timing and Paint Timing marks, in milliseconds from navigation start:
  response_end            the HTML has arrived
  first_contentful_paint  the first render a person sees (header, model list placeholder)
  dom_content_loaded      HTML parsed and the page's scripts run
  models_rendered         the model list from /v1/models is on the page

    python bench/ui_render.py [--loads 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
from typing import Any

from app.api.ui import ASSETS_DIR
from tests.browser import chromium
from tests.support import serve_in_thread

_TIMINGS = """
const nav = performance.getEntriesByType('navigation')[0];
const paint = performance.getEntriesByName('first-contentful-paint')[0];
const models = performance.getEntriesByName('mcdrop-models-rendered')[0];
return {response_end: nav.responseEnd, first_contentful_paint: paint ? paint.startTime : null,
        dom_content_loaded: nav.domContentLoadedEventEnd,
        models_rendered: models ? models.startTime : null,
        transferred_bytes: nav.transferSize};
"""
_MARKS = ("response_end", "first_contentful_paint", "dom_content_loaded", "models_rendered")


def _load(driver: Any, url: str) -> dict[str, float]:
    driver.get("about:blank")
    driver.get(url)
    for _ in range(100):
        timings: dict[str, float] = driver.execute_script(_TIMINGS)
        if timings["models_rendered"] is not None and timings["first_contentful_paint"]:
            return timings
        driver.execute_script("return new Promise((done) => setTimeout(done, 20))")
    raise RuntimeError("the page did not render its model list")


def main(argv: list[str] | None = None) -> None:
    """Measure and print the asset sizes and the medians of the load timings (JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--loads", type=int, default=7, help="page loads to take medians of")
    args = parser.parse_args(argv)
    sizes = {path.name: path.stat().st_size for path in sorted(ASSETS_DIR.iterdir())}
    with serve_in_thread() as base_url, chromium() as driver:
        loads = [_load(driver, f"{base_url}/") for _ in range(args.loads)]
    report = {
        "asset_bytes": sizes,
        "asset_bytes_total": sum(sizes.values()),
        "cold_load_ms": {mark: round(loads[0][mark], 1) for mark in _MARKS},
        "median_ms": {
            mark: round(statistics.median(load[mark] for load in loads), 1) for mark in _MARKS
        },
        "loads": args.loads,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
