"""The web page on a model made by ``mcdrop train`` and ``mcdrop calibrate --conformal``, in
headless Chromium: fields labelled with the CSV header, the conformal band drawn where the
API's answer puts it. The page helpers are ``tests/api/test_ui_browser.py``'s."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By

from app.cli import main
from app.commands.tabular import write_csv
from tests.api.test_ui_browser import (
    _api_row,
    _assert_numbers_match,
    _open,
    _predict,
    _screenshot,
    _set,
    _shown,
    _unlabelled,
)
from tests.browser import chromium_paths
from tests.support import serve_in_thread

pytestmark = pytest.mark.skipif(
    chromium_paths() is None,
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
)
# The target sits between two features: the form must leave it out and keep the file's order.
HEADER = ["dose_mg", "response", "age_years", "weight_kg"]
FEATURES = ["dose_mg", "age_years", "weight_kg"]
FAST = ["--epochs", "30", "--hidden", "16", "--batch-size", "32", "--lr", "0.01", "--quiet"]


def _write_rows(path: Path, rows: int, seed: int) -> None:
    """A noisy linear response of three features, with the target column second."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(rows, 3, generator=generator) * torch.tensor([100.0, 60.0, 40.0])
    noise = torch.randn(rows, 1, generator=generator)
    y = 0.05 * x[:, :1] - 0.02 * x[:, 1:2] + 0.1 * x[:, 2:] + noise
    write_csv(path, HEADER, torch.cat([x[:, :1], y, x[:, 1:]], dim=1).tolist())


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """models/dose: trained on one split, conformally calibrated at 0.9 on another."""
    root = tmp_path_factory.mktemp("trained")
    _write_rows(root / "fit.csv", 200, seed=0)
    _write_rows(root / "cal.csv", 60, seed=1)
    folder = root / "models" / "dose"
    argv = ["train", "--data", str(root / "fit.csv"), "--target", "response"]
    argv += ["--task", "regression", "--out", str(folder), "--dropout", "0.1"]
    assert main([*argv, "--length-scale", "0.01", *FAST]) == 0
    argv = ["calibrate", str(folder), "--conformal", "--in-data", str(root / "cal.csv")]
    assert main([*argv, "--level", "0.9", "--n-samples", "50"]) == 0
    return folder.parent


def test_a_trained_models_fields_are_its_csv_columns_and_the_band_is_drawn(
    browser: WebDriver, trained: Path
) -> None:
    with serve_in_thread(trained) as base_url:
        _open(browser, f"{base_url}/#dose", "feature-0")
        labels = browser.find_elements(By.CSS_SELECTOR, "#input-widget label")
        assert [label.text for label in labels] == FEATURES
        card = [dd.text for dd in browser.find_elements(By.CSS_SELECTOR, "#card dd")]
        assert ", ".join(FEATURES) in card
        features = [55.0, 30.0, 12.5]
        for index, value in enumerate(features):
            _set(browser.find_element(By.ID, f"feature-{index}"), value)
        _predict(browser, n_samples=100, seed=5)
        row = _api_row(base_url, "dose", features, 100, 5)["predictions"][0]
    lower, upper = row["conformal_lower"][0], row["conformal_upper"][0]
    assert row["conformal_level"] == 0.9 and lower < row["mean"][0] < upper
    expected = {"mean": row["mean"][0], "conformal_lower": lower, "conformal_upper": upper}
    _assert_numbers_match(_shown(browser), expected)
    chart = browser.find_element(By.CSS_SELECTOR, "#main-chart svg")
    band = chart.find_element(By.CSS_SELECTOR, "rect.conformal")
    assert float(band.get_attribute("data-lower") or "nan") == lower
    assert float(band.get_attribute("data-upper") or "nan") == upper
    # x is affine in the value: the predictive interval's rectangle fixes the scale.
    pi = chart.find_element(By.CSS_SELECTOR, "rect.pi")
    pi_x, pi_width = (float(pi.get_attribute(a) or "nan") for a in ("x", "width"))
    per_unit = pi_width / (row["pi_upper"][0] - row["pi_lower"][0])
    band_x, band_width = (float(band.get_attribute(a) or "nan") for a in ("x", "width"))
    assert band_x == pytest.approx(pi_x + (lower - row["pi_lower"][0]) * per_unit, abs=1e-6)
    assert band_width == pytest.approx((upper - lower) * per_unit, abs=1e-6)
    label = chart.get_attribute("aria-label") or ""
    assert f"90% conformal band {lower:.2f} to {upper:.2f}" in label
    assert browser.find_elements(By.CSS_SELECTOR, "#n-pass rect.conformal")
    assert not browser.find_elements(By.CSS_SELECTOR, "#one-pass rect.conformal")
    heads = browser.find_elements(By.CSS_SELECTOR, "#numbers thead th")
    names = [head.get_attribute("textContent") for head in heads]
    assert names[-2:] == ["conformal lower", "conformal upper"]
    assert _unlabelled(browser) == []
    _screenshot(browser, "trained-conformal.png")
