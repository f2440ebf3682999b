"""Headless Chromium for the web page's tests and its render benchmark.

Debian's ``chromium`` and ``chromium-driver`` packages, driven by Selenium with explicit paths:
Selenium Manager is never asked to download a browser or driver (the machines are offline).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver

CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
DRIVER_PATHS = ("/usr/bin/chromedriver",)
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
)


def chromium_paths() -> tuple[str, str] | None:
    """(browser, driver) when both are installed, else None."""
    browser = next((p for p in CHROMIUM_PATHS if os.access(p, os.X_OK)), None)
    driver = next((p for p in DRIVER_PATHS if os.access(p, os.X_OK)), None)
    return (browser, driver) if browser and driver else None


@contextmanager
def chromium(window: tuple[int, int] = (1200, 900)) -> Iterator[WebDriver]:
    """A Selenium Chrome driver on a fresh profile, quit and removed afterwards."""
    paths = chromium_paths()
    if paths is None:
        raise RuntimeError("chromium and chromium-driver are not installed")
    browser, driver_path = paths
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must never download
    profile = tempfile.mkdtemp(prefix="mcdrop-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--window-size={window[0]},{window[1]}")
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


ARTIFACTS = Path(__file__).resolve().parent.parent / ".artifacts" / "ui"
"""Screenshots and timings the browser tests leave behind (git-ignored)."""
