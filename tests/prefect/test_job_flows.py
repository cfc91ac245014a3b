"""Job flows end to end: the .map Sage example, and real flow-run cancellations.

The cancellations go through Prefect's own machinery: a runner process (``serve``) runs the
flow in a child process, the test sets the run to Cancelling through the API as the UI does,
and the runner stops the flow. The remote job must be killed, not left running.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from cocalc_tasks import CocalcClient
from prefect_tasks.jobs import JOB_LABEL_PREFIX
from tests.conftest import ROOT, SECRET_KEY

TICKS = "echo start >> runs.log; for i in $(seq 120); do echo tick $i; sleep 1; done"


def test_the_sage_jobs_flow_maps_on_real_sage(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.support.sage_server import sage_server

    with sage_server() as url:
        monkeypatch.setenv("COCALC_HOST", url)
        monkeypatch.setenv("COCALC_API_KEY", SECRET_KEY)
        monkeypatch.setenv("COCALC_PROJECT_ID", str(uuid.uuid4()))
        from example_dags.prefect_flows import sage_jobs

        values = sage_jobs(limits=(10**4, 10**5), chunks=2)
    assert values == [
        {"limit": 10**4, "mertens": -23, "primes": 1229},
        {"limit": 10**5, "mertens": -48, "primes": 9592},
    ]


@contextmanager
def runner(host: str, project: str) -> Iterator[str]:
    """A runner process serving the example flows; yields the deployments' name."""
    from prefect.settings import PREFECT_API_URL

    name = f"cancel-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        "COCALC_HOST": host,
        "COCALC_API_KEY": SECRET_KEY,
        "COCALC_PROJECT_ID": project,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.prefect_runner", name],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        yield name
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def start(deployment: str, parameters: dict[str, Any]) -> Any:
    from prefect.deployments import run_deployment

    deadline = time.monotonic() + 90
    while True:  # the runner registers its deployments when it starts
        try:
            return run_deployment(deployment, parameters=parameters, timeout=0)
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def jobs_of(flow_run_id: Any) -> list[str]:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as api:
        labels = api.read_flow_run(flow_run_id).labels or {}
    return [key[len(JOB_LABEL_PREFIX) :] for key in labels if key.startswith(JOB_LABEL_PREFIX)]


def wait_for(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def cancel(flow_run_id: Any) -> str:
    """Cancel the run as the UI does, and return its final state's type."""
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelling

    with get_client(sync_client=True) as api:
        api.set_flow_run_state(flow_run_id, Cancelling(), force=True)

        def final() -> str | None:
            state = api.read_flow_run(flow_run_id).state
            return state.type.value if state is not None and state.is_final() else None

        return str(wait_for(final, 90, "the flow run to end"))


def test_cancelling_a_flow_run_cancels_its_job(local_server: str) -> None:
    project = str(uuid.uuid4())
    client = CocalcClient(api_key=SECRET_KEY, host=local_server, project_id=project)
    with runner(local_server, project) as name:
        flow_run = start(f"cocalc-long-job/{name}", {"command": TICKS})
        (job_id,) = wait_for(lambda: jobs_of(flow_run.id), 120, "the job to start")
        wait_for(lambda: "tick 2" in client.job(job_id).stdout, 30, "the job to tick")
        cancelled_at = time.monotonic()
        assert cancel(flow_run.id) == "CANCELLED"
        wait_for(lambda: client.job(job_id).done, 30, "the job to end")
        status = client.job(job_id)
    assert status.status == "killed"  # cancelled, not run to its end
    assert time.monotonic() - cancelled_at < 60 and "tick 120" not in status.stdout
    assert client.exec("cat runs.log").stdout.count("start") == 1


def test_cancelling_a_mapped_sage_flow_cancels_every_job() -> None:
    """Jobs waited on in worker threads (.map) are cancelled too."""
    from tests.support.sage_server import sage_server

    project = str(uuid.uuid4())
    with sage_server() as url, runner(url, project) as name:
        client = CocalcClient(api_key=SECRET_KEY, host=url, project_id=project)
        flow_run = start(f"cocalc-sage-jobs/{name}", {"limits": [10**8, 10**8], "chunks": 100})
        jobs = wait_for(
            lambda: (ids := jobs_of(flow_run.id)) and len(ids) == 2 and ids, 180, "two jobs"
        )
        wait_for(lambda: all("chunk 1/100" in client.job(j).stdout for j in jobs), 120, "progress")
        assert cancel(flow_run.id) == "CANCELLED"
        wait_for(lambda: all(client.job(j).done for j in jobs), 60, "the jobs to end")
        statuses = [client.job(j).status for j in jobs]
    assert statuses == ["killed", "killed"]
