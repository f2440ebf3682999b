"""The page's referral view in a real browser (headless Chromium): the curves it draws for an
uploaded labelled set are the evaluate API's referral curves for the same body."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import torch
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser import chromium_paths
from tests.support import serve_in_thread, write_model

pytestmark = pytest.mark.skipif(
    chromium_paths() is None,
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
)
WAIT_S = 30
ROWS = (torch.rand(40, 2, generator=torch.Generator().manual_seed(5)) * 4 - 2).tolist()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("models")
    write_model(root, "tiny")  # two classes, left and right
    with serve_in_thread(root) as base_url:
        yield base_url


def test_the_drawn_referral_curves_are_the_apis(
    server: str, browser: WebDriver, tmp_path: Path
) -> None:
    targets = ["left" if a + b > 0 else "right" for a, b in ROWS]
    body = {"inputs": ROWS, "targets": targets, "n_samples": 20, "seed": 3}
    answer = httpx.post(f"{server}/v1/models/tiny/evaluate", json=body, timeout=60)
    assert answer.status_code == 200, answer.text
    expected = {r["metric"]: r["curves"] for r in answer.json()["classification"]["referral"]}
    assert set(expected) == {"accuracy", "auroc"}
    path = tmp_path / "labelled.json"
    path.write_text(json.dumps(body))
    browser.get("about:blank")
    browser.get(f"{server}/#tiny")
    WebDriverWait(browser, WAIT_S).until(
        lambda d: d.find_element(By.ID, "model-section").is_displayed()
    )
    browser.find_element(By.CSS_SELECTOR, "#referral summary").click()
    browser.find_element(By.ID, "referral-file").send_keys(str(path))
    browser.find_element(By.CSS_SELECTOR, "#referral-form button").click()
    status = browser.find_element(By.ID, "referral-status")
    WebDriverWait(browser, WAIT_S).until(lambda d: status.text.startswith("Done"))
    charts = browser.find_elements(By.CSS_SELECTOR, "#referral-charts svg")
    assert len(charts) == 2
    for chart, metric in zip(charts, ["accuracy", "auroc"], strict=True):
        lines = chart.find_elements(By.TAG_NAME, "polyline")
        drawn = {
            line.get_attribute("data-ordering"): json.loads(line.get_attribute("data-values") or "")
            for line in lines
        }
        assert drawn == expected[metric]
        assert metric in (chart.get_attribute("aria-label") or "")
