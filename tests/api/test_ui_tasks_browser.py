"""The multi-label and token classification views in a real browser (headless Chromium): the
words, labels, bars and threshold the page shows are the API's answer for the same seed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import torch
from safetensors.torch import load_file, save_file
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser import ARTIFACTS, chromium_paths
from tests.hf_models import write_text_model
from tests.support import serve_in_thread

pytestmark = pytest.mark.skipif(
    chromium_paths() is None,
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
)
pytest.importorskip("transformers")
WAIT_S = 30
TEXT = "the parcel reached motorwayville late, kind staff"
LABELS = ["billing", "paperwork", "delivery"]
TOPICS: dict[str, Any] = {
    "id2label": dict(enumerate(LABELS)),
    "problem_type": "multi_label_classification",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("models")
    write_text_model(root, "tags", head="Token", labels={"id2label": {0: "O", 1: "PER", 2: "LOC"}})
    topics = write_text_model(
        root, "topics", labels=TOPICS, card={"multilabel": {"threshold": 0.6}}
    )
    weights = load_file(str(topics / "model.safetensors"))
    weights["classifier.bias"] = torch.tensor([4.6, -4.6, 0.4])  # on, off, near the threshold
    save_file(weights, str(topics / "model.safetensors"), metadata={"format": "pt"})
    with serve_in_thread(root) as base_url:
        yield base_url


def _predict_text(driver: WebDriver, url: str, n_samples: int, seed: int) -> None:
    driver.get("about:blank")
    driver.get(url)
    WebDriverWait(driver, WAIT_S).until(lambda d: d.find_elements(By.ID, "text-input"))
    driver.find_element(By.ID, "text-input").send_keys(TEXT)
    for field, value in (("n-samples", n_samples), ("seed", seed)):
        element = driver.find_element(By.ID, field)
        element.clear()
        element.send_keys(str(value))
    driver.find_element(By.ID, "predict").click()
    status = driver.find_element(By.ID, "predict-status")
    WebDriverWait(driver, WAIT_S).until(lambda d: status.text.startswith("Done"))


def _screenshot(driver: WebDriver, name: str) -> None:
    """The whole page, 1200 CSS pixels wide, as ``.artifacts/ui/<name>``."""
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    metrics = {"width": 1200, "height": height, "deviceScaleFactor": 1, "mobile": False}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    driver.save_screenshot(str(ARTIFACTS / name))
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def _api(base_url: str, model: str, n: int, seed: int) -> Any:
    body = {"inputs": [TEXT], "n_samples": n, "seed": seed, "return_samples": True}
    response = httpx.post(f"{base_url}/v1/models/{model}/predict", json=body)
    assert response.status_code == 200, response.text
    return response.json()["predictions"][0]


def test_multilabel_shows_independent_label_bars_and_the_threshold(
    browser: WebDriver, server: str
) -> None:
    _predict_text(browser, f"{server}/#topics", 40, 5)
    row = _api(server, "topics", 40, 5)
    shown = browser.find_element(By.CSS_SELECTOR, "#summary [data-field=predicted_labels]")
    assert json.loads(shown.get_attribute("data-value") or "") == row["predicted_labels"]
    assert "billing" in row["predicted_labels"] and "paperwork" not in row["predicted_labels"]
    chart = browser.find_element(By.ID, "main-chart")
    bars = chart.find_elements(By.CSS_SELECTOR, "rect[data-label]")
    assert [bar.get_attribute("data-label") for bar in bars] == LABELS
    on = [b.get_attribute("data-label") for b in bars if "best" in (b.get_attribute("class") or "")]
    assert on == row["predicted_labels"]
    heights = [float(bar.get_attribute("height") or 0) for bar in bars]
    assert heights[0] > heights[2] > heights[1]  # each bar its own probability, not a share
    assert chart.find_elements(By.CSS_SELECTOR, "line.threshold")
    assert "threshold 0.60" in chart.text
    assert browser.find_element(By.ID, "passes").is_displayed()
    _screenshot(browser, "multilabel.png")


def test_tokens_are_highlighted_by_label_and_by_mutual_information(
    browser: WebDriver, server: str
) -> None:
    _predict_text(browser, f"{server}/#tags", 40, 2)
    tokens = _api(server, "tags", 40, 2)["tokens"]
    marks = browser.find_elements(By.CSS_SELECTOR, "#summary .tokens mark[data-field=token]")
    assert [m.get_attribute("data-label") for m in marks] == [t["label"] for t in tokens]
    words = [m.find_element(By.CLASS_NAME, "word").text for m in marks]
    assert words == [t["text"] for t in tokens]
    assert "motorwayville" in words  # several sub-tokens, one word
    colours = {m.get_attribute("data-label"): m.get_attribute("class") for m in marks}
    assert len(set(colours.values())) == len(colours), "one colour per label"
    assert not browser.find_element(By.ID, "passes").is_displayed()
    browser.find_element(By.ID, "colour-mi").click()
    marks = browser.find_elements(By.CSS_SELECTOR, "#summary .tokens mark[data-field=token]")
    assert [float(m.get_attribute("data-mi") or "nan") for m in marks] == [
        t["mutual_information"] for t in tokens
    ]
    shares = [float((m.get_attribute("style") or "").split(":")[1].strip(" ;")) for m in marks]
    most = max(t["mutual_information"] for t in tokens)
    assert shares[[t["mutual_information"] for t in tokens].index(most)] == max(shares)
    _screenshot(browser, "tokens.png")
