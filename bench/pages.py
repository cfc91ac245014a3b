"""The server's CPU while 8 job pages follow 8 running jobs in a real browser (headless Chromium,
Debian's), against the same 8 jobs with no page open; and a page's render time."""

from __future__ import annotations

import base64
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import requests
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from bench.common import KEY, QUICK, cpu_share, ms, timed
from cocalc_tasks import CocalcClient
from cocalc_tasks.server.local_server import LocalServer

PROJECT = "6e75dbf1-0342-4249-9dce-6b21648656e9"
PAGES = 8
WATCH_SECONDS = 10.0 if QUICK else 30.0
#: Each job prints a line twice a second, so every poll of every page has something new.
JOB = "for i in $(seq 1 1000); do echo line $i; sleep 0.5; done"


def _live_requests(server: LocalServer) -> float:
    text = requests.get(server.url + "/metrics", auth=(KEY, ""), timeout=30).text
    found = re.findall(
        r'^cocalc_tasks_requests_total\{outcome="200",route="page:/projects/\{id\}/jobs/'
        r'\{job\}/live"\} ([0-9.e+]+)$',
        text,
        re.M,
    )
    return sum(float(v) for v in found)


def _browser(profile: Path) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    service = Service(executable_path=shutil.which("chromedriver") or "chromedriver")
    return webdriver.Chrome(options=options, service=service)


def page_costs() -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory() as data,
        LocalServer(data_dir=data, api_keys=[KEY], args=["--pool-size", "1"]) as server,
        CocalcClient(KEY, server.url, project_id=PROJECT) as client,
    ):
        assert server.process is not None
        pid = server.process.pid
        jobs = [client.submit(JOB, timeout=3600) for _ in range(PAGES)]
        urls = [client.page_url(job.project_id, job.job_id) for job in jobs]
        session = requests.Session()
        session.auth = (KEY, "")
        render = timed(lambda: session.get(urls[0]).raise_for_status(), 50)
        live = timed(lambda: session.get(urls[0] + "/live?stdout=0&stderr=0"), 50)
        time.sleep(2)
        jobs_only = cpu_share(pid, WATCH_SECONDS)
        browser = _browser(Path(data) / "chromium")
        try:
            token = base64.b64encode(f"{KEY}:".encode()).decode()
            for index, url in enumerate(urls):
                if index:
                    browser.switch_to.new_window("window")
                # Each window sends the key, as a browser does after its login prompt.
                browser.execute_cdp_cmd("Network.enable", {})
                browser.execute_cdp_cmd(
                    "Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {token}"}}
                )
                browser.get(url)
            time.sleep(3)
            polls_before = _live_requests(server)
            started = time.perf_counter()
            with_pages = cpu_share(pid, WATCH_SECONDS)
            polls = (_live_requests(server) - polls_before) / (time.perf_counter() - started)
        finally:
            browser.quit()
        for job in jobs:
            client.cancel(job)
    return {
        "pages": PAGES,
        "watch_seconds": WATCH_SECONDS,
        "jobs_only_cpu_pct": jobs_only * 100,
        "with_pages_cpu_pct": with_pages * 100,
        "pages_cpu_pct": (with_pages - jobs_only) * 100,
        "live_polls_per_second": polls,
        "job_page": ms(render),
        "live_poll": ms(live),
    }


if __name__ == "__main__":  # pragma: no cover - `python -m bench.pages`, this part alone
    import json

    print(json.dumps(page_costs(), indent=2))
