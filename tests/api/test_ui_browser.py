"""The web page in a real browser (headless Chromium): what it shows equals what the API says.

Screenshots and load timings land in ``.artifacts/ui/`` (git-ignored).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select, WebDriverWait
from sklearn.datasets import load_diabetes

from tests.browser import ARTIFACTS, chromium_paths
from tests.inputs.models import FEATURES, write_sequence_model
from tests.support import metric_value, serve_in_thread, write_model

pytestmark = pytest.mark.skipif(
    chromium_paths() is None,
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
)
WAIT_S = 30


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with serve_in_thread() as base_url:
        yield base_url


def _open(driver: WebDriver, url: str, ready_id: str) -> WebElement:
    driver.get("about:blank")  # a new document even when only the #model part changes
    driver.get(url)
    WebDriverWait(driver, WAIT_S).until(lambda d: d.find_elements(By.ID, ready_id))
    return driver.find_element(By.ID, ready_id)


def _set(element: WebElement, value: object) -> None:
    element.clear()
    element.send_keys(str(value))


def _predict(driver: WebDriver, n_samples: int, seed: int) -> None:
    _set(driver.find_element(By.ID, "n-samples"), n_samples)
    _set(driver.find_element(By.ID, "seed"), seed)
    driver.find_element(By.ID, "predict").click()
    status = driver.find_element(By.ID, "predict-status")
    WebDriverWait(driver, WAIT_S).until(lambda d: status.text.startswith(("Done", "Expected")))
    assert status.text == f"Done: {n_samples} passes, seed {seed}."


def _api_row(base_url: str, model: str, row: Any, n: int, seed: int, **kw: Any) -> Any:
    body = {"inputs": [row], "n_samples": n, "seed": seed, "return_samples": True}
    response = httpx.post(f"{base_url}/v1/models/{model}/predict", json=body, **kw)
    assert response.status_code == 200, response.text
    return response.json()


def _shown(driver: WebDriver) -> dict[str, tuple[str, str]]:
    """Every number in the summary: field -> (full-precision value, displayed text)."""
    found: dict[str, tuple[str, str]] = {}
    for element in driver.find_elements(By.CSS_SELECTOR, "#summary dd[data-field]"):
        text = element.text.split(" ")[0]
        found[element.get_attribute("data-field") or ""] = (
            element.get_attribute("data-value") or "",
            text,
        )
    return found


def _assert_numbers_match(shown: dict[str, tuple[str, str]], expected: dict[str, float]) -> None:
    for field, value in expected.items():
        full, text = shown[field]
        assert float(full) == value, field
        digits = 0 if field in ("n_samples", "seed") else len(text.split(".")[1])
        assert text == f"{value:.{digits}f}", field


def _screenshot(driver: WebDriver, name: str) -> Path:
    """The whole page, 1200 CSS pixels wide, as ``.artifacts/ui/<name>``."""
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    metrics = {"width": 1200, "height": height, "deviceScaleFactor": 1, "mobile": False}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    path = ARTIFACTS / name
    driver.save_screenshot(str(path))
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    return path


def _unlabelled(driver: WebDriver) -> list[str]:
    script = """
      const named = (el) => (el.labels && el.labels.length) || el.getAttribute('aria-label')
        || el.getAttribute('aria-labelledby') || (el.tagName === 'BUTTON' && el.textContent.trim());
      const controls = [...document.querySelectorAll('input, select, textarea, button, canvas')];
      const images = [...document.querySelectorAll('svg')]
        .filter((s) => !s.getAttribute('aria-label'));
      return controls.filter((el) => !named(el)).concat(images)
        .map((el) => el.outerHTML.slice(0, 80));
    """
    result: list[str] = driver.execute_script(script)
    return result


def _draw_seven(driver: WebDriver, canvas: WebElement) -> None:
    chain = ActionChains(driver).move_to_element_with_offset(canvas, -70, -80).click_and_hold()
    for x, y in [(-20, -80), (30, -80), (70, -80), (50, -30), (25, 20), (0, 70), (-10, 95)]:
        chain.move_to_element_with_offset(canvas, x, y)
    chain.release().perform()


def test_a_drawn_digit_shows_the_apis_numbers(browser: WebDriver, server: str) -> None:
    canvas = _open(browser, f"{server}/#digits-mlp", "draw")
    _record_timings(browser)
    _draw_seven(browser, canvas)
    pixels = json.loads(canvas.get_attribute("data-values") or "[]")
    assert len(pixels) == 64 and all(isinstance(v, int) and 0 <= v <= 16 for v in pixels)
    assert max(pixels) == 16 and pixels[63] == 0 and 5 <= sum(v > 0 for v in pixels) <= 40
    _predict(browser, n_samples=50, seed=7)
    answer = _api_row(server, "digits-mlp", pixels, 50, 7)
    row = answer["predictions"][0]
    fields = ("confidence", "predictive_entropy", "expected_entropy", "mutual_information")
    expected = {name: row[name] for name in (*fields, "variation_ratio")}
    _assert_numbers_match(_shown(browser), {**expected, "n_samples": 50, "seed": 7})
    label = browser.find_element(By.CSS_SELECTOR, '#summary [data-field="label"]').text
    assert label == row["label"]
    table = browser.find_elements(By.CSS_SELECTOR, "#numbers tbody tr")
    assert len(table) == 10
    one = _api_row(server, "digits-mlp", pixels, 1, 7)["predictions"][0]
    caption = browser.find_element(By.CSS_SELECTOR, "#one-pass figcaption").text
    assert caption.startswith(f"1 pass: {one['label']} at {one['confidence']:.3f}.")
    bars = browser.find_elements(By.CSS_SELECTOR, "#pass-histogram rect.bar title")
    counts = [int((bar.get_attribute("textContent") or "").split(" ")[0]) for bar in bars]
    assert sum(counts) == 50
    whiskers = browser.find_elements(By.CSS_SELECTOR, "#main-chart path.whisker")
    assert len(whiskers) == 10
    assert _unlabelled(browser) == []
    _screenshot(browser, "digits.png")


def test_the_canvas_can_be_drawn_with_the_keyboard(browser: WebDriver, server: str) -> None:
    canvas = _open(browser, f"{server}/#digits-cnn", "draw")
    canvas.send_keys(Keys.SPACE, Keys.ARROW_RIGHT, Keys.SPACE, Keys.ARROW_DOWN, Keys.SPACE)
    canvas.send_keys(Keys.DELETE)
    pixels = json.loads(canvas.get_attribute("data-values") or "[]")
    inked = [i for i, v in enumerate(pixels) if v]
    assert inked == [4 * 8 + 4, 4 * 8 + 5] and pixels[36] == 16


def test_a_typed_tabular_row_and_the_regression_chart(browser: WebDriver, server: str) -> None:
    _open(browser, f"{server}/#diabetes-mlp", "feature-0")
    features = [round(float(v), 5) for v in load_diabetes().data[0]]
    for index, value in enumerate(features):
        _set(browser.find_element(By.ID, f"feature-{index}"), value)
    assert browser.find_element(By.CSS_SELECTOR, 'label[for="feature-2"]').text == "bmi"
    _predict(browser, n_samples=200, seed=3)
    row = _api_row(server, "diabetes-mlp", features, 200, 3)["predictions"][0]
    names = ("mean", "std", "epistemic_variance", "aleatoric_variance", "ci_lower", "ci_upper")
    expected = {name: row[name][0] for name in (*names, "pi_lower", "pi_upper")}
    _assert_numbers_match(_shown(browser), expected)
    chart = browser.find_element(By.CSS_SELECTOR, "#main-chart svg")
    density = chart.find_element(By.CSS_SELECTOR, "path.density").get_attribute("d") or ""
    assert density.count("L") == 200
    assert len(chart.find_elements(By.CSS_SELECTOR, "line.rug")) == 200
    label = chart.get_attribute("aria-label") or ""
    assert f"predictive interval {row['pi_lower'][0]:.2f} to {row['pi_upper'][0]:.2f}" in label
    for selector in ("rect.pi", "rect.ci"):
        assert float(chart.find_element(By.CSS_SELECTOR, selector).get_attribute("width") or 0) > 1
    assert browser.find_elements(By.CSS_SELECTOR, "#one-pass path.density")
    # No conformal rule in this card: no band, no band numbers.
    assert not browser.find_elements(By.CSS_SELECTOR, "rect.conformal")
    assert "conformal_lower" not in _shown(browser)
    assert _unlabelled(browser) == []
    _screenshot(browser, "diabetes.png")


def test_the_monitor_draws_live_histograms(browser: WebDriver, server: str) -> None:
    image = [[[float((r + c) % 17) for c in range(8)] for r in range(8)]]
    _api_row(server, "digits-cnn", image, 20, 1)
    _open(browser, f"{server}/ui/monitor", "every")
    Select(browser.find_element(By.ID, "every")).select_by_value("2")
    selector = '[data-model="digits-cnn"] [data-family="mcdrop_predictive_entropy"]'
    WebDriverWait(browser, WAIT_S).until(lambda d: d.find_elements(By.CSS_SELECTOR, selector))
    metrics = httpx.get(f"{server}/metrics").text
    count = metric_value(metrics, "mcdrop_predictive_entropy_count", {"model": "digits-cnn"})
    figure = browser.find_element(By.CSS_SELECTOR, selector)
    assert float(figure.get_attribute("data-count") or 0) == count
    titles = figure.find_elements(By.CSS_SELECTOR, "rect.bar title")
    shown = [t.get_attribute("textContent") or "" for t in titles]
    assert sum(int(text.split(": ")[1].split(" ")[0]) for text in shown) == count
    _api_row(server, "digits-cnn", [[[0.0] * 8] * 8], 20, 2)
    WebDriverWait(browser, WAIT_S).until(
        lambda d: (
            float(d.find_element(By.CSS_SELECTOR, selector).get_attribute("data-count") or 0)
            == count + 1
        )
    )
    assert browser.find_elements(By.CSS_SELECTOR, '[data-family="mcdrop_regression_std"]')
    assert _unlabelled(browser) == []
    _screenshot(browser, "monitor.png")


def test_every_input_kind_is_built_from_the_card(
    browser: WebDriver, server: str, tmp_path: Path
) -> None:
    _open(browser, f"{server}/#digits-mlp", "draw")
    kinds = browser.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        import('/ui/inputs.js').then((m) => done([
          [{widget: 'image', shape: [3, 32, 32]}],
          [{widget: 'text', shape: []}],
          [{widget: 'canvas', shape: [1, 8, 8], grid: [8, 8], range: [0, 16]}],
          [{widget: 'fields', shape: [3]}, ['a', 'b', 'c']],
          [{widget: 'numbers', shape: [16]}],
          [{widget: 'integers', shape: [6], range: [0, 50]}],
          [{widget: 'sequence', shape: [-1, 5], max_length: 40}],
          [{widget: 'audio', shape: [-1, 40], parameters: {sample_rate: 16000}}],
        ].map(([input, names]) => m.buildInput(input, names).kind)));
        """
    )
    assert kinds == ["image", "text", "canvas", "fields", "csv", "integers", "sequence", "audio"]
    # What the server describes is what the page builds: the digits' canvas from its kind.
    described = httpx.get(f"{server}/v1/models/digits-mlp").json()["input"]
    assert described["widget"] == "canvas" and described["grid"] == [8, 8]
    # The text box stops at the card's character limit (what the server checks), not at its
    # token count.
    limit = browser.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        import('/ui/inputs.js').then((m) => done(m.buildInput(
          {widget: 'text', max_length: 16, max_characters: 300})
          .node.querySelector('textarea').maxLength));
        """
    )
    assert limit == 300
    image = tmp_path / "pixel.png"
    image.write_bytes(base64.b64decode(_ONE_PIXEL_PNG))
    browser.execute_script(
        "return import('/ui/inputs.js').then((m) => { window.widget = m.buildInput("
        "{widget: 'image', shape: [3, 4, 4]});"
        "document.body.append(window.widget.node); })"
    )
    WebDriverWait(browser, WAIT_S).until(lambda d: d.find_elements(By.ID, "image-file"))
    browser.find_element(By.ID, "image-file").send_keys(str(image))
    sent = browser.execute_async_script(
        "const done = arguments[arguments.length - 1]; window.widget.read().then(done);"
    )
    assert sent == {"b64": _ONE_PIXEL_PNG}


def test_the_api_key_is_asked_for_and_kept_in_the_session(
    browser: WebDriver, tmp_path: Path
) -> None:
    # A threshold of 0 makes every row abstain: the badge must say so.
    rule = {"score": "predictive_entropy", "threshold": 0.0, "in_distribution_share": 0.5}
    write_model(tmp_path, "tiny", card={"abstention": rule})
    with serve_in_thread(tmp_path, api_keys=["s3cret"]) as base_url:
        browser.get(f"{base_url}/")
        status = browser.find_element(By.ID, "models-status")
        WebDriverWait(browser, WAIT_S).until(lambda d: "API key" in status.text)
        browser.find_element(By.ID, "api-key").send_keys("s3cret", Keys.ENTER)
        area = WebDriverWait(browser, WAIT_S).until(lambda d: d.find_element(By.ID, "csv-row"))
        area.send_keys("0.5, -1.5")
        _predict(browser, n_samples=20, seed=3)
        headers = {"authorization": "Bearer s3cret"}
        row = _api_row(base_url, "tiny", [0.5, -1.5], 20, 3, headers=headers)["predictions"][0]
        _assert_numbers_match(_shown(browser), {"confidence": row["confidence"]})
        badge = browser.find_element(By.CSS_SELECTOR, '#summary [data-field="abstain"]')
        assert row["abstain"] is True and badge.get_attribute("data-value") == "true"
        assert badge.text == "Abstains: too uncertain"
        card = [dd.text for dd in browser.find_elements(By.CSS_SELECTOR, "#card dd")]
        assert "abstains when predictive entropy > 0; 50.0% of in-distribution rows pass" in card
        stored = browser.execute_script(
            "return [sessionStorage.getItem('mcdrop.apiKey'), localStorage.length, document.cookie]"
        )
        assert stored == ["s3cret", 0, ""]


def _record_timings(driver: WebDriver) -> None:
    """Navigation Timing of the page load (ms from navigation start) into timings.json."""
    timings = driver.execute_script(
        """
        const nav = performance.getEntriesByType('navigation')[0];
        const paint = Object.fromEntries(
          performance.getEntriesByType('paint').map((e) => [e.name, e.startTime]));
        const models = performance.getEntriesByName('mcdrop-models-rendered')[0];
        return {response_end: nav.responseEnd, dom_content_loaded: nav.domContentLoadedEventEnd,
                load: nav.loadEventEnd, first_contentful_paint: paint['first-contentful-paint'],
                models_rendered: models ? models.startTime : null};
        """
    )
    (ARTIFACTS / "timings.json").write_text(json.dumps(timings, indent=2))
    assert timings["first_contentful_paint"] > 0


_ONE_PIXEL_PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmM"
    "IQAAAABJRU5ErkJggg=="
)


def test_a_conformal_prediction_set_is_shown(browser: WebDriver, server: str) -> None:
    canvas = _open(browser, f"{server}/#digits-mlp", "draw")
    canvas.send_keys(Keys.SPACE, Keys.ARROW_DOWN, Keys.SPACE, Keys.ARROW_DOWN, Keys.SPACE)
    # Calibrated models add these fields to each row; here the page's fetch adds them.
    browser.execute_script(
        """
        const plain = window.fetch;
        window.fetch = async (...args) => {
          const response = await plain(...args);
          if (!String(args[0]).endsWith('/predict')) return response;
          const body = await response.json();
          for (const row of body.predictions) Object.assign(row, {prediction_set: [7, 1]});
          body.conformal_level = 0.9;
          return new Response(JSON.stringify(body), {status: 200});
        };
        """
    )
    _predict(browser, n_samples=10, seed=0)
    shown = browser.find_element(By.CSS_SELECTOR, '#summary [data-field="prediction_set"]')
    assert shown.text == "Prediction set (90% conformal): {7, 1}"


def _status_after_predict(driver: WebDriver) -> str:
    driver.find_element(By.ID, "predict").click()
    status = driver.find_element(By.ID, "predict-status")
    WebDriverWait(driver, WAIT_S).until(lambda d: status.text and "Sampling" not in status.text)
    return status.text


def test_a_sequence_model_takes_a_csv_or_json_upload_not_a_canvas(
    browser: WebDriver, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    write_sequence_model(models, "SequenceGRU", name="gru")
    steps = [
        [round(float(v), 4) for v in step]
        for step in torch.randn(7, FEATURES, generator=torch.Generator().manual_seed(3)).tolist()
    ]
    csv = tmp_path / "steps.csv"
    header = ",".join(f"f{i}" for i in range(FEATURES))
    csv.write_text(header + "\n" + "\n".join(",".join(map(str, step)) for step in steps) + "\n")
    with serve_in_thread(models) as base_url:
        _open(browser, f"{base_url}/#gru", "sequence-file")
        assert not browser.find_elements(By.ID, "draw")
        browser.find_element(By.ID, "sequence-file").send_keys(str(csv))
        summary = browser.find_element(By.ID, "sequence-summary")
        WebDriverWait(browser, WAIT_S).until(lambda d: summary.text == "7 steps read.")
        _predict(browser, n_samples=30, seed=4)
        row = _api_row(base_url, "gru", steps, 30, 4)["predictions"][0]
        fields = ("confidence", "predictive_entropy", "mutual_information")
        _assert_numbers_match(_shown(browser), {name: row[name] for name in fields})
        assert _unlabelled(browser) == []
        _screenshot(browser, "sequence.png")
        # The same steps pasted as JSON, and a line of the wrong width named before sending.
        _open(browser, f"{base_url}/#gru", "sequence-text")
        _set(browser.find_element(By.ID, "sequence-text"), json.dumps(steps[:3]))
        _predict(browser, n_samples=30, seed=4)
        short = _api_row(base_url, "gru", steps[:3], 30, 4)["predictions"][0]
        _assert_numbers_match(_shown(browser), {"confidence": short["confidence"]})
        _set(browser.find_element(By.ID, "sequence-text"), "1,2,3,4,5\n1,2")
        assert _status_after_predict(browser) == "Line 2: expected 5 numbers, got 2."


def test_a_token_id_model_takes_a_row_of_integers(browser: WebDriver, tmp_path: Path) -> None:
    write_sequence_model(tmp_path, "TokenBag", name="bag")
    with serve_in_thread(tmp_path) as base_url:
        area = _open(browser, f"{base_url}/#bag", "integer-row")
        area.send_keys("3 1 4 1 5 9")
        _predict(browser, n_samples=25, seed=1)
        row = _api_row(base_url, "bag", [3, 1, 4, 1, 5, 9], 25, 1)["predictions"][0]
        _assert_numbers_match(_shown(browser), {"confidence": row["confidence"]})
        _set(area, "3 1 4 1 5 90")
        assert _status_after_predict(browser) == "value 6: 90 is outside [0, 50)."


def test_the_shift_flag_and_the_set_are_shown(browser: WebDriver, tmp_path: Path) -> None:
    """A row far from the training data: the page says so (as the API does) beside its set."""
    from app.cli import main
    from app.commands.tabular import write_csv

    folder = write_model(tmp_path, "tiny", card={"target": "label"})
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(200, 2, generator=generator)
    cells = [[*r, "right" if r[1] > r[0] else "left"] for r in x.tolist()]
    write_csv(tmp_path / "train.csv", ["a", "b", "label"], cells[:120])
    write_csv(tmp_path / "held.csv", ["a", "b", "label"], cells[120:])
    ood = ["calibrate", str(folder), "--ood", "--in-data", str(tmp_path / "train.csv")]
    assert main([*ood, "--held-out", str(tmp_path / "held.csv")]) == 0
    sets = ["calibrate", str(folder), "--conformal", "--in-data", str(tmp_path / "held.csv")]
    assert main([*sets, "--score", "aps"]) == 0
    with serve_in_thread(tmp_path) as base_url:
        area = _open(browser, f"{base_url}/", "csv-row")
        area.send_keys("40, -30")
        _predict(browser, n_samples=20, seed=3)
        row = _api_row(base_url, "tiny", [40.0, -30.0], 20, 3)["predictions"][0]
        badge = browser.find_element(By.CSS_SELECTOR, '#summary [data-field="shift_flag"]')
        assert row["shift_flag"] is True and badge.get_attribute("data-value") == "true"
        assert badge.text.startswith("Unlike the training data (shift ")
        shown = browser.find_element(By.CSS_SELECTOR, '#summary [data-field="prediction_set"]')
        assert shown.text.endswith("{" + ", ".join(row["prediction_set"]) + "}")
        card = [dd.text for dd in browser.find_elements(By.CSS_SELECTOR, "#card dd")]
        assert any(text.startswith("flags rows whose shift score >") for text in card)
