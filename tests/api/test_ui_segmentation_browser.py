"""The segmentation view in a real browser (headless Chromium): the area interval and the
uncertainty numbers the page shows are the API's answer for the same row and seed, the overlay
draws the mask's contour, and the opacity slider fades the mutual-information heatmap."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from app.tasks.segmentation_overlay import CONTOUR_RGB, contour
from tests.browser import ARTIFACTS, chromium_paths
from tests.segmentation_models import SIZE, write_unet_folder
from tests.support import serve_in_thread

pytestmark = pytest.mark.skipif(
    chromium_paths() is None,
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
)
WAIT_S = 30


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("models")
    write_unet_folder(root, "unet", {"p": 0.3}, labels=["background", "lesion"])
    with serve_in_thread(root) as base_url:
        yield base_url


def _draw_and_predict(driver: WebDriver, url: str, n_samples: int, seed: int) -> list[Any]:
    """Ink a block of cells with the keyboard, predict; the row the page sent."""
    driver.get("about:blank")
    driver.get(url)
    WebDriverWait(driver, WAIT_S).until(lambda d: d.find_elements(By.ID, "draw"))
    canvas = driver.find_element(By.ID, "draw")
    canvas.click()
    for _ in range(5):
        canvas.send_keys(*([Keys.SPACE, Keys.ARROW_RIGHT] * 4), Keys.ARROW_DOWN)
        canvas.send_keys(*([Keys.ARROW_LEFT] * 4))
    for field, value in (("n-samples", n_samples), ("seed", seed)):
        element = driver.find_element(By.ID, field)
        element.clear()
        element.send_keys(str(value))
    values = json.loads(canvas.get_attribute("data-values") or "[]")
    driver.find_element(By.ID, "predict").click()
    status = driver.find_element(By.ID, "predict-status")
    WebDriverWait(driver, WAIT_S).until(lambda d: status.text.startswith("Done"))
    return [[values[r * SIZE : (r + 1) * SIZE] for r in range(SIZE)]]


def _pixel(driver: WebDriver, canvas_id: str, row: int, col: int) -> list[int]:
    """The RGBA of image pixel (row, col) as the canvas draws it (its centre)."""
    script = (
        "const c = document.getElementById(arguments[0]); const s = c.width / arguments[3];"
        "const x = Math.floor((arguments[2] + 0.5) * s), y = Math.floor((arguments[1] + 0.5) * s);"
        "return Array.from(c.getContext('2d').getImageData(x, y, 1, 1).data);"
    )
    found: list[int] = driver.execute_script(script, canvas_id, row, col, SIZE)
    return found


def test_the_page_shows_the_apis_areas_and_draws_the_mask_and_heatmap(
    browser: WebDriver, server: str
) -> None:
    sent = _draw_and_predict(browser, f"{server}/#unet", 24, 4)
    body = {"inputs": [sent], "n_samples": 24, "seed": 4}
    response = httpx.post(f"{server}/v1/models/unet/predict", json=body)
    assert response.status_code == 200, response.text
    row = response.json()["predictions"][0]
    shown = browser.find_element(By.CSS_SELECTOR, "#summary [data-field=area]")
    lesion = row["areas"][1]
    assert shown.get_attribute("data-label") == "lesion"
    for key in ("pixels", "mean", "lower", "upper"):
        assert float(shown.get_attribute(f"data-{key}") or "nan") == lesion[key]
    assert f"{lesion['pixels']} px" in shown.text
    mi = browser.find_element(By.CSS_SELECTOR, "#summary [data-field=mean_mutual_information]")
    assert float(mi.get_attribute("data-value") or "nan") == row["mean_mutual_information"]
    mask = row["maps"]["mask"]
    import numpy as np

    edge = contour(np.array(mask))
    assert edge.any() and lesion["pixels"] > 0
    r, c = (int(v) for v in np.argwhere(edge)[0])
    assert _pixel(browser, "segmentation-overlay", r, c)[:3] == list(CONTOUR_RGB)
    heat = np.array(row["maps"]["mutual_information"]) * ~edge
    hr, hc = (int(v) for v in np.unravel_index(int(heat.argmax()), heat.shape))
    assert heat[hr, hc] > 0.05 * math.log(2)
    hot = _pixel(browser, "segmentation-overlay", hr, hc)
    slider = browser.find_element(By.ID, "mi-opacity")
    browser.execute_script(
        "arguments[0].value = 0; arguments[0].dispatchEvent(new Event('input'));", slider
    )
    plain = _pixel(browser, "segmentation-overlay", hr, hc)
    assert plain[0] == plain[1] == plain[2], "opacity 0: the grey image alone"
    assert hot[0] > hot[1], "the heatmap reddens the most uncertain pixel"
    assert not browser.find_element(By.ID, "passes").is_displayed()
    browser.execute_script(
        "arguments[0].value = 60; arguments[0].dispatchEvent(new Event('input'));", slider
    )
    height = int(browser.execute_script("return document.documentElement.scrollHeight"))
    metrics = {"width": 1200, "height": height, "deviceScaleFactor": 1, "mobile": False}
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    browser.save_screenshot(str(ARTIFACTS / "segmentation.png"))
    browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
