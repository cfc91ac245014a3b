"""The server's pages and /metrics against the real server: who sees what, escaping, the
Cancel form and its token, the executed notebook, and the metric families."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
import requests

from cocalc_tasks import CocalcClient
from cocalc_tasks.errors import CocalcError
from cocalc_tasks.notebooks import run_notebook
from cocalc_tasks.server.local_server import LocalServer
from tests.conftest import SECRET_KEY
from tests.server.conftest import OTHER_PROJECT, PROJECT_ID, PROJECT_KEY, start_server

pytestmark = pytest.mark.server

SCRIPT = "<script>alert('job')</script>"


def get(server: LocalServer, path: str, key: str | None = None, **kw: object) -> requests.Response:
    auth = (key, "") if key else None
    return requests.get(server.url + path, auth=auth, timeout=30, **kw)  # type: ignore[arg-type]


def wait_for(predicate: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


@pytest.fixture
def project_client(server: LocalServer) -> Iterator[CocalcClient]:
    with CocalcClient(
        api_key=SECRET_KEY, host=server.url, project_id=PROJECT_ID, timeout=(5, 60)
    ) as c:
        yield c


def test_who_sees_what(server: LocalServer, project_client: CocalcClient) -> None:
    job = project_client.submit(f'echo ran; echo "{SCRIPT}"', timeout=60)
    project_client.wait(job)
    project_client.execute("1+1", kernel="python3", no_cache=True)
    job_page = f"/projects/{PROJECT_ID}/jobs/{job.job_id}"

    # An account key sees the project on / and every page of it.
    home = get(server, "/", SECRET_KEY)
    assert home.status_code == 200 and PROJECT_ID in home.text
    assert get(server, f"/projects/{PROJECT_ID}", SECRET_KEY).status_code == 200
    assert get(server, job_page, SECRET_KEY).status_code == 200
    # An account key may look at any project (empty), but not at a job of another project.
    assert get(server, f"/projects/{OTHER_PROJECT}", SECRET_KEY).status_code == 200
    assert (
        get(server, f"/projects/{OTHER_PROJECT}/jobs/{job.job_id}", SECRET_KEY).status_code == 404
    )

    # A project key: its project, and a 404 (never 403) for any other.
    assert get(server, f"/projects/{PROJECT_ID}", PROJECT_KEY).status_code == 200
    assert get(server, job_page, PROJECT_KEY).status_code == 200
    other = get(server, f"/projects/{OTHER_PROJECT}", PROJECT_KEY)
    assert other.status_code == 404
    assert get(server, "/projects/not-a-uuid", PROJECT_KEY).status_code == 404
    assert OTHER_PROJECT not in get(server, "/", PROJECT_KEY).text

    # Anonymous visitors (allowed on this server): the global pool, no project; a project
    # page asks the browser for a key.
    anonymous = get(server, "/")
    assert anonymous.status_code == 200
    assert "global pool" in anonymous.text and PROJECT_ID not in anonymous.text
    assert job.job_id not in anonymous.text
    prompt = get(server, f"/projects/{PROJECT_ID}")
    assert prompt.status_code == 401
    assert prompt.headers["WWW-Authenticate"].startswith("Basic ")
    assert get(server, job_page, "sk-not-a-known-key").status_code == 401
    # /login asks until a known key comes, then goes home.
    assert get(server, "/login").status_code == 401
    login = get(server, "/login", SECRET_KEY, allow_redirects=False)
    assert login.status_code == 303 and login.headers["location"] == "/"

    # No page shows a key.
    for path in ("/", f"/projects/{PROJECT_ID}", job_page):
        for key in (SECRET_KEY, PROJECT_KEY):
            page = get(server, path, key)
            assert SECRET_KEY not in page.text and PROJECT_KEY not in page.text


def test_what_a_job_prints_is_escaped_everywhere(
    server: LocalServer, project_client: CocalcClient
) -> None:
    job = project_client.submit(
        f'echo "{SCRIPT}"; echo "{SCRIPT}" >&2; echo \'<img src=x onerror=alert(1)>\'',
        timeout=60,
    )
    project_client.wait(job)
    pages = [
        get(server, f"/projects/{PROJECT_ID}/jobs/{job.job_id}", SECRET_KEY),
        get(server, f"/projects/{PROJECT_ID}", SECRET_KEY),
        get(server, "/", SECRET_KEY),
    ]
    for page in pages:
        assert page.status_code == 200
        assert "<script>alert" not in page.text and "<img src=x" not in page.text
        assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    job_page = pages[0].text
    escaped = "&lt;script&gt;alert(&#39;job&#39;)&lt;/script&gt;"
    stdout = re.search(r'<pre class="stream stdout" id="stdout">(.*?)</pre>', job_page, re.S)
    stderr = re.search(r'<pre class="stream stderr" id="stderr">(.*?)</pre>', job_page, re.S)
    assert stdout and stderr
    assert escaped in stdout.group(1) and "&lt;img src=x" in stdout.group(1)
    assert escaped in stderr.group(1) and "img" not in stderr.group(1)  # told apart
    # The live feed is JSON: the text as it was printed, for the page to add as text.
    live = get(server, f"/projects/{PROJECT_ID}/jobs/{job.job_id}/live?stdout=0", SECRET_KEY)
    assert live.headers["content-type"] == "application/json"
    assert live.json()["stdout"].startswith(SCRIPT) and live.json()["status"] == "completed"


def test_the_live_feed_sends_only_what_is_new(
    server: LocalServer, project_client: CocalcClient
) -> None:
    job = project_client.submit("for i in $(seq 1 40); do echo line $i; sleep 0.1; done")
    url = f"/projects/{PROJECT_ID}/jobs/{job.job_id}/live"
    seen = ""
    offset = 0
    deadline = time.monotonic() + 30
    states = set()
    while time.monotonic() < deadline:
        live = get(server, f"{url}?stdout={offset}&stderr=0", SECRET_KEY).json()
        seen += live["stdout"]
        offset = live["stdout_length"]
        states.add(live["status"])
        if live["status"] != "running":
            break
        time.sleep(0.3)
    assert states >= {"running", "completed"}
    assert seen == "".join(f"line {i}\n" for i in range(1, 41))


def cancel_token(page: str) -> str:
    found = re.search(r'name="token" value="([0-9a-f]{64})"', page)
    assert found, "no Cancel form on the page"
    return found.group(1)


def test_cancel_needs_the_pages_token_and_kills_the_job(
    server: LocalServer, project_client: CocalcClient
) -> None:
    job = project_client.submit("echo started; sleep 300", timeout=600)
    wait_for(lambda: "started" in project_client.job(job).stdout)
    path = f"/projects/{PROJECT_ID}/jobs/{job.job_id}"
    token = cancel_token(get(server, path, SECRET_KEY).text)
    post = server.url + path + "/cancel"

    def cancel(key: str | None, data: dict[str, str], **headers: str) -> requests.Response:
        return requests.post(
            post,
            data=data,
            auth=(key, "") if key else None,
            headers=headers,
            allow_redirects=False,
            timeout=30,
        )

    assert cancel(SECRET_KEY, {}).status_code == 403  # no token
    assert cancel(SECRET_KEY, {"token": token, "pad": "x" * 10_000}).status_code == 413
    assert cancel(SECRET_KEY, {"token": "0" * 64}).status_code == 403
    # Another site's form: the browser says so, token or not.
    assert (
        cancel(SECRET_KEY, {"token": token}, **{"Sec-Fetch-Site": "cross-site"}).status_code == 403
    )
    assert cancel(SECRET_KEY, {"token": token}, Origin="https://evil.example").status_code == 403
    # The token is the key's: the project key's page has its own.
    assert cancel(PROJECT_KEY, {"token": token}).status_code == 403
    assert cancel(None, {"token": token}).status_code == 401
    assert project_client.job(job).status == "running"

    done = cancel(SECRET_KEY, {"token": token}, Origin=server.url)
    assert done.status_code == 303 and done.headers["location"] == path
    assert project_client.job(job).status == "killed"
    page = get(server, path, SECRET_KEY).text
    assert 'class="status killed"' in page and 'id="cancel"' not in page


def test_a_notebook_run_links_its_executed_notebook(
    server: LocalServer, project_client: CocalcClient
) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("print(6 * 7)"),
        nbformat.v4.new_code_cell(
            "from IPython.display import HTML\nHTML(\"<b>bold</b><script>alert('nb')</script>\")"
        ),
    ]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    result = run_notebook(nb, client=project_client)
    job_page = get(server, f"/projects/{PROJECT_ID}/jobs/{result.job_id}", SECRET_KEY).text
    assert "the executed notebook" in job_page
    rendered = get(server, f"/projects/{PROJECT_ID}/jobs/{result.job_id}/notebook", SECRET_KEY)
    assert rendered.status_code == 200
    text = re.sub(r"<[^>]+>", "", rendered.text)  # the source is highlighted in spans
    assert "print(6 * 7)" in text and "\n42\n" in text
    assert "<b>bold</b>" in rendered.text  # HTML outputs are shown, sanitized
    assert "<script>alert" not in rendered.text
    # Not a notebook run: no notebook, a 404 that says why.
    job = project_client.submit("true")
    project_client.wait(job)
    missing = get(server, f"/projects/{PROJECT_ID}/jobs/{job.job_id}/notebook", SECRET_KEY)
    assert missing.status_code == 404 and "not a notebook run" in missing.text


def test_links_lead_to_the_job_page_here_and_to_the_project_on_cocalc(
    server: LocalServer, project_client: CocalcClient
) -> None:
    job = project_client.submit("true")
    assert project_client.has_job_pages
    url = project_client.page_url(job.project_id, job.job_id)
    assert url == f"{server.url}/projects/{PROJECT_ID}/jobs/{job.job_id}"
    assert requests.get(url, auth=(SECRET_KEY, ""), timeout=30).status_code == 200
    assert project_client.page_url() == f"{server.url}/projects/{PROJECT_ID}"


METRIC_FAMILIES = (
    "cocalc_tasks_requests_total",
    "cocalc_tasks_request_duration_seconds_bucket",
    "cocalc_tasks_executions_total",
    "cocalc_tasks_kernel_starts_total",
    "cocalc_tasks_kernel_start_seconds_bucket",
    "cocalc_tasks_pool_kernels",
    "cocalc_tasks_jobs_running",
    "cocalc_tasks_jobs_finished_total",
    "cocalc_tasks_quota_used_seconds",
    "cocalc_tasks_refusals_total",
    "cocalc_tasks_memory_kills_total",
)


def samples(text: str) -> dict[str, float]:
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def metric(values: dict[str, float], prefix: str) -> float:
    return sum(v for k, v in values.items() if k.startswith(prefix))


def test_metrics_count_what_happens(server: LocalServer, project_client: CocalcClient) -> None:
    assert get(server, "/metrics").status_code == 401
    assert get(server, "/metrics", PROJECT_KEY).status_code == 403
    before = samples(get(server, "/metrics", SECRET_KEY).text)
    code = f"{time.time_ns()} * 2"
    project_client.execute(code, kernel="python3")
    project_client.execute(code, kernel="python3")  # the cache answers
    with (
        CocalcClient(api_key=PROJECT_KEY, host=server.url, timeout=(5, 60)) as other,
        pytest.raises(CocalcError, match="collaborator"),
    ):
        other.execute("1", kernel="python3", project_id=OTHER_PROJECT)
    job = project_client.submit("exit 0")
    project_client.wait(job)
    response = get(server, "/metrics", SECRET_KEY)
    assert response.headers["content-type"].startswith("text/plain")
    after = samples(response.text)
    for family in METRIC_FAMILIES:
        assert any(name.startswith(family) for name in after), family
    computed = 'cocalc_tasks_executions_total{source="computed"}'
    cached = 'cocalc_tasks_executions_total{source="cache"}'
    assert after[computed] - before.get(computed, 0) >= 1
    assert after[cached] - before.get(cached, 0) == 1
    refused = 'cocalc_tasks_refusals_total{reason="other_project"}'
    assert after[refused] - before.get(refused, 0) == 1
    done = 'cocalc_tasks_jobs_finished_total{status="completed"}'
    assert after[done] - before.get(done, 0) == 1
    # The computed call went through every phase of one; the cached one stopped at the cache.
    for phase in ("checks", "cache_lookup", "kernel_take", "execute", "release", "store_writes"):
        name = f'cocalc_tasks_execute_phase_seconds_count{{call="computed",phase="{phase}"}}'
        assert after[name] - before.get(name, 0) == 1, phase
    hit = 'cocalc_tasks_execute_phase_seconds_count{call="cached",phase="cache_lookup"}'
    assert after[hit] - before.get(hit, 0) == 1
    assert not any('call="cached",phase="execute"' in name for name in after)
    assert metric(after, "cocalc_tasks_kernel_starts_total") >= 2
    assert metric(after, 'cocalc_tasks_pool_kernels{area="global"') >= 1
    assert SECRET_KEY not in response.text and PROJECT_ID not in response.text


def test_metrics_public_and_no_anonymous(tmp_path: Path) -> None:
    srv = start_server(tmp_path, "--metrics-public", "--no-anonymous", "--pool-size", "0")
    try:
        assert get(srv, "/metrics").status_code == 200
        home = get(srv, "/")
        assert home.status_code == 401 and "WWW-Authenticate" in home.headers
        assert get(srv, "/", SECRET_KEY).status_code == 200
    finally:
        srv.stop()
