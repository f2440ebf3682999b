"""Fixtures of the web page's browser tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from selenium.webdriver.chrome.webdriver import WebDriver


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    """Headless Chromium for one test module, its screenshots under ``ARTIFACTS``."""
    from tests.browser import ARTIFACTS, chromium

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with chromium() as driver:
        yield driver
