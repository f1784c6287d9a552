"""The upload page in a real browser: headless Chromium against a real ``depotx serve``.

Needs Debian's ``chromium`` and ``chromium-driver`` packages and ``selenium``;
without them the test is skipped with the reason shown, never passed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests._uvicorn import running_server

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def _missing() -> str | None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            return f"{path} is not installed (apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium)"
    return None


@pytest.fixture
def server_url(tmp_path: Path) -> Iterator[str]:
    with running_server(tmp_path / "files") as (_, url):
        yield url + "/"


def test_upload_through_the_page_then_list_and_download(server_url: str, tmp_path: Path) -> None:
    reason = _missing()
    if reason is not None:
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    upload = tmp_path / "from-the-browser é.txt"
    upload.write_bytes(b"uploaded by headless chromium\n")

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    try:
        driver.set_page_load_timeout(30)
        driver.get(server_url)
        assert driver.find_element(By.ID, "files").text == "No files yet."
        driver.find_element(By.ID, "file").send_keys(str(upload))
        driver.find_element(By.ID, "submit").click()
        link = WebDriverWait(driver, 30).until(
            expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "#files a"))
        )
        assert link.text == upload.name
        href = link.get_attribute("href")
        assert href is not None
        assert href.startswith(server_url + "depot/default/")
    finally:
        driver.quit()

    download = httpx.get(href, timeout=10)
    assert download.status_code == 200
    assert download.content == upload.read_bytes()
    assert (
        "filename*=UTF-8''from-the-browser%20%C3%A9.txt" in download.headers["content-disposition"]
    )
