"""A person's view of a job, in a real browser: live output, Cancel, the final state.

The browser sends the API key as HTTP Basic credentials (what it sends after its login prompt),
set through the DevTools protocol so that the page's own requests carry it too. The screenshot
of the running job's page is what the documentation shows (``make screenshot`` copies it to
``docs/images/job-page.png``)."""

from __future__ import annotations

import base64
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from cocalc_tasks import CocalcClient
from cocalc_tasks.server.local_server import LocalServer
from tests.conftest import SECRET_KEY
from tests.server.conftest import PROJECT_ID, start_server

pytestmark = pytest.mark.server

#: Set by ``make screenshot``: where to copy the job page's screenshot.
SCREENSHOT_ENV = "COCALC_TASKS_SCREENSHOT"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    srv = start_server(tmp_path_factory.mktemp("browser-server"), "--pool-size", "1")
    yield srv
    srv.stop()


def sign_in(browser: webdriver.Chrome, key: str) -> None:
    token = base64.b64encode(f"{key}:".encode()).decode()
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd(
        "Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {token}"}}
    )


def processes_with(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if any(marker in part for part in proc.info["cmdline"] or ()):
            found.append(proc)
    return found


def text_of(browser: webdriver.Chrome, element_id: str) -> str:
    return str(browser.find_element(By.ID, element_id).text)


def test_a_running_job_page_follows_its_output_and_cancels_it(
    server: LocalServer, browser: webdriver.Chrome, tmp_path: Path
) -> None:
    marker = f"page-test-{uuid.uuid4().hex[:12]}"
    script = (
        'for i in $(seq 1 20); do echo "line $i"; '
        'if [ $((i % 5)) = 0 ]; then echo "warning $i <script>alert(1)</script>" >&2; fi; '
        "for j in $(seq 1 40000); do :; done; sleep 0.9; done"
    )
    with CocalcClient(
        api_key=SECRET_KEY, host=server.url, project_id=PROJECT_ID, timeout=(5, 60)
    ) as client:
        # bash's $0 is the marker: the job's processes can be found by it on this machine.
        job = client.submit("bash", ["-c", script, marker], timeout=120)
        url = client.page_url(job.project_id, job.job_id)
        assert url.endswith(f"/projects/{PROJECT_ID}/jobs/{job.job_id}")
        assert processes_with(marker), "the job is not running"

        sign_in(browser, SECRET_KEY)
        browser.get(url)
        assert browser.find_element(By.ID, "status").text == "running"
        # The same document (no reload) shows lines that were printed after it loaded.
        browser.execute_script("window.cocalcTestMarker = 1")
        first = text_of(browser, "stdout").count("line ")
        WebDriverWait(browser, 30, poll_frequency=0.2).until(
            lambda b: (
                text_of(b, "stdout").count("line ") >= max(first + 3, 8)
                and "warning 5" in text_of(b, "stderr")
            )
        )
        assert browser.execute_script("return window.cocalcTestMarker") == 1
        stdout, stderr = text_of(browser, "stdout"), text_of(browser, "stderr")
        assert "warning" not in stdout and "line" not in stderr  # told apart
        assert "<script>alert(1)</script>" in stderr  # shown as text, never run
        assert browser.execute_script("return document.querySelectorAll('pre script').length") == 0
        WebDriverWait(browser, 30).until(
            lambda b: b.find_elements(By.CSS_SELECTOR, "#chart svg polyline.cpu")
        )

        shot = tmp_path / "job-page.png"
        assert browser.save_screenshot(str(shot))
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
        if target := os.environ.get(SCREENSHOT_ENV):
            shutil.copyfile(shot, target)

        browser.find_element(By.ID, "cancel").click()
        # The form's answer is a redirect to the page: elements found during it may go stale.
        WebDriverWait(
            browser, 15, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)
        ).until(lambda b: b.find_element(By.ID, "status").text == "killed")
        assert client.job(job).status == "killed"
        assert not browser.find_elements(By.ID, "cancel")
        deadline = time.monotonic() + 10
        while processes_with(marker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not processes_with(marker), "the job's processes outlived the Cancel"
        assert server.status()["running_commands"] == 0
