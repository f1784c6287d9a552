"""The upload page in a real browser: headless Chromium against a real ``depotx serve``.

Needs Debian's ``chromium`` and ``chromium-driver`` packages and ``selenium``;
without them the test is skipped with the reason shown, never passed.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

SERVER = """
import sys
from depotx import StorageManager
from depotx.server import serve

manager = StorageManager()
manager.configure("default", {"depot.storage_path": sys.argv[1]})
serve(manager, host="127.0.0.1", port=0, log_level="warning")
"""


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
    process = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(tmp_path / "files")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 30)
        assert ready, "depotx serve printed nothing within 30 s"
        url = process.stdout.readline().split(" at ")[1].split()[0]
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url, timeout=2).raise_for_status()
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the server did not start listening"
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


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
