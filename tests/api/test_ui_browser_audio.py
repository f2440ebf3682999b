"""The web page's audio upload in a real browser (headless Chromium): a shipped WAV sent to the
bundled ``spoken-digits`` shows the API's numbers, its waveform and its log-mel frames (the
page's picture uses the server's recipe: the same frame count, values within float rounding)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from app.engine.audio import decode_audio
from app.engine.log_mel import log_mel
from tests.api.test_ui_browser import (
    WAIT_S,
    _api_row,
    _assert_numbers_match,
    _open,
    _predict,
    _screenshot,
    _shown,
    _unlabelled,
)
from tests.browser import chromium_paths
from tests.support import serve_in_thread

pytestmark = pytest.mark.skipif(
    chromium_paths() is None,
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
)
SAMPLES = Path(__file__).resolve().parents[2] / "docs" / "audio"
MODEL = "spoken-digits"


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with serve_in_thread() as base_url:
        yield base_url


def test_a_shipped_wav_shows_the_apis_numbers_and_its_pictures(
    browser: WebDriver, server: str
) -> None:
    clip = SAMPLES / "seven.wav"
    _open(browser, f"{server}/#{MODEL}", "audio-file")
    browser.find_element(By.ID, "audio-file").send_keys(str(clip))
    summary = browser.find_element(By.ID, "audio-summary")
    WebDriverWait(browser, WAIT_S).until(lambda d: "log-mel bands" in summary.text)
    frames = log_mel(decode_audio(clip.read_bytes(), 16_000, 2.0, "x"), 16_000, 40, 25, 10)
    assert summary.text.endswith(f"at 16000 Hz: {frames.shape[0]} frames of 40 log-mel bands.")
    picture = browser.find_element(By.ID, "audio-log-mel")
    assert picture.get_attribute("data-frames") == str(frames.shape[0])
    assert browser.find_elements(By.CSS_SELECTOR, "#audio-waveform polygon.wave")
    _predict(browser, n_samples=50, seed=7)
    row = _api_row(server, MODEL, {"b64": base64.b64encode(clip.read_bytes()).decode()}, 50, 7)
    row = row["predictions"][0]
    fields = ("confidence", "predictive_entropy", "expected_entropy", "mutual_information")
    _assert_numbers_match(_shown(browser), {name: row[name] for name in fields})
    label = browser.find_element(By.CSS_SELECTOR, '#summary [data-field="label"]').text
    assert label == row["label"] == "seven"
    assert _unlabelled(browser) == []
    _screenshot(browser, "audio.png")


def test_the_pages_log_mel_is_the_servers_recipe(browser: WebDriver, server: str) -> None:
    _open(browser, f"{server}/#{MODEL}", "audio-file")
    t = np.arange(2000) / 8000
    wave = (0.4 * np.sin(2 * np.pi * 700 * t) + 0.1 * np.sin(2 * np.pi * 2100 * t)).tolist()
    params = {"n_mels": 12, "win_ms": 32, "hop_ms": 16, "f_min": 50.0, "f_max": 3500.0}
    page = browser.execute_async_script(
        """
        const [samples, params, done] = arguments;
        import('/ui/audio.js')
          .then((m) => done(m.logMel(Float32Array.from(samples), 8000, params)));
        """,
        wave,
        params,
    )
    ours = log_mel(np.asarray(wave, np.float32), 8000, 12, 32, 16, 50.0, 3500.0)
    np.testing.assert_allclose(np.asarray(page), ours, atol=1e-3)
