"""Headless Chromium from Debian's packages (``chromium``, ``chromium-driver``), driven by
Selenium through that chromedriver: no browser is downloaded. ``make test`` installs them and
sets ``COCALC_REQUIRE_BROWSER=1``, so a missing browser fails the suite instead of skipping."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM = ("chromium", "chromium-browser")


def _find(names: tuple[str, ...]) -> str | None:
    return next((found for name in names if (found := shutil.which(name))), None)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    binary, driver = _find(CHROMIUM), _find(("chromedriver",))
    if binary is None or driver is None:
        message = "needs Debian's chromium and chromium-driver (make test installs them)"
        if os.environ.get("COCALC_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (
        "--headless=new",
        "--no-sandbox",  # root in CI; the page is this test's own server
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1200,1000",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    service = Service(executable_path=driver, log_output=str(tmp_path / "chromedriver.log"))
    chrome = webdriver.Chrome(options=options, service=service)
    try:
        yield chrome
    finally:
        chrome.quit()
