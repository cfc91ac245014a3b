"""The steps under a real Airflow: API server, scheduler, dag-processor and triggerer, each its
own process (``tests/support/airflow_deployment.py``), and DAGs triggered by hand.

``dag.test()`` runs triggers in line and never applies a deferred task's timeout; here the
triggerer runs the trigger and the scheduler enforces the deadline, as in production.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from cocalc_tasks import CocalcClient
from cocalc_tasks.server.local_server import LocalServer
from tests.conftest import ROOT, SECRET_KEY
from tests.support.airflow_deployment import AirflowDeployment, airflow_deployment

EXAMPLES = ROOT / "example_dags"

DAG = """
from datetime import timedelta

from airflow.sdk import DAG

from airflow_provider.operators.job import CocalcRunOperator

with DAG("cocalc_deadline", schedule=None, catchup=False) as deadline_dag:
    CocalcRunOperator(
        task_id="long",
        command="echo started >> runs.log; for i in $(seq 300); do echo tick $i; sleep 1; done",
        project_id="{project}",
        deferrable=True,
        poll_interval=1,
        timeout=3600,
        execution_timeout=timedelta(seconds=20),
    )

with DAG("cocalc_triggerer_restart", schedule=None, catchup=False) as restart_dag:
    CocalcRunOperator(
        task_id="ticks",
        command="for i in $(seq 40); do echo tick $i; sleep 1; done",
        project_id="{project}",
        deferrable=True,
        poll_interval=1,
    )
"""


@pytest.fixture(scope="module")
def project() -> str:
    return str(uuid.uuid4())


@pytest.fixture(scope="module")
def cocalc_url(cocalc_server: LocalServer) -> str:
    return cocalc_server.url


@pytest.fixture(scope="module")
def deployment(cocalc_url: str, project: str) -> Iterator[AirflowDeployment]:
    """One deployment for the module: it takes half a minute to start."""
    from cocalc_tasks.testing.airflow import connection_env

    with tempfile.TemporaryDirectory(prefix="cocalc-airflow-deploy-") as tmp:
        dags = Path(tmp) / "dags"
        dags.mkdir()
        (dags / "cocalc_steps.py").write_text(textwrap.dedent(DAG).format(project=project))
        shutil.copy(EXAMPLES / "cocalc_command_job.py", dags)
        env = {
            **connection_env(cocalc_url, SECRET_KEY),
            # Airflow's OpenLineage provider, as a team would point it at Marquez: here a file.
            "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
                {"type": "file", "log_file_path": f"{tmp}/lineage.jsonl", "append": True}
            ),
        }
        with airflow_deployment(Path(tmp) / "home", dags, env) as running:
            yield running


def test_execution_timeout_of_a_deferred_task_cancels_its_job(
    deployment: AirflowDeployment, cocalc_url: str, project: str
) -> None:
    """A deferred run operator whose ``execution_timeout`` (20 s) passes long before its job
    would end (300 s): the real triggerer fires at that deadline, the task fails with a
    timeout, and the CoCalc job is cancelled, not left running."""
    client = CocalcClient(api_key=SECRET_KEY, host=cocalc_url, project_id=project)
    deployment.wait_for_dag("cocalc_deadline")
    run_id = deployment.trigger("cocalc_deadline")
    started = time.monotonic()
    state = deployment.wait_for_run("cocalc_deadline", run_id, within=300)
    elapsed = time.monotonic() - started
    assert state == "failed", deployment.task_states("cocalc_deadline", run_id)
    log = deployment.task_log("cocalc_deadline", run_id, "long")
    assert "execution_timeout passed while waiting for job" in log, log[-4000:]
    assert "tick 3" in log  # the triggerer streamed the job's output to the task's log
    (job_id,) = set(re.findall(r"submitted CoCalc job ([0-9a-f-]{36})", log))
    assert client.job(job_id, project_id=project).status == "killed"
    assert client.exec("cat runs.log").stdout.count("started") == 1  # never run twice
    assert elapsed < 200  # the deadline, not the job's 300 s, ended the task
    assert SECRET_KEY not in log


def test_a_triggerer_restart_logs_no_line_twice(deployment: AirflowDeployment) -> None:
    """Restart the triggerer while it streams a deferred job's output: the rebuilt trigger
    goes on from where the last one stopped (its offsets are in XCom), so every line of the
    job is in the task's log exactly once, and the job ran once."""
    deployment.wait_for_dag("cocalc_triggerer_restart")
    run_id = deployment.trigger("cocalc_triggerer_restart")
    deadline = time.monotonic() + 120
    while "tick 8" not in deployment.task_log("cocalc_triggerer_restart", run_id, "ticks"):
        assert time.monotonic() < deadline, deployment.logs()
        time.sleep(0.5)
    deployment.restart("triggerer")
    state = deployment.wait_for_run("cocalc_triggerer_restart", run_id, within=240)
    log = deployment.task_log("cocalc_triggerer_restart", run_id, "ticks")
    assert state == "success", log[-4000:]
    ticks = re.findall(r"\[stdout\] tick (\d+)\b", log)
    assert sorted(map(int, ticks)) == list(range(1, 41)), ticks  # each once, none lost
    assert "resuming CoCalc job" in log  # the second trigger knew what was logged
    assert len(set(re.findall(r"submitted CoCalc job ([0-9a-f-]{36})", log))) == 1


def test_a_scheduled_run_reports_its_job_to_openlineage(deployment: AirflowDeployment) -> None:
    """The restart test's run, as the worker reported it to OpenLineage: the job's id and
    exit code in the ``cocalc`` run facet, and the job as an external query."""
    transport = json.loads(deployment.env["AIRFLOW__OPENLINEAGE__TRANSPORT"])
    lineage = Path(transport["log_file_path"])
    events = [json.loads(line) for line in lineage.read_text().splitlines() if line.strip()]
    (done,) = [
        e
        for e in events
        if e.get("eventType") == "COMPLETE" and e["job"]["name"] == "cocalc_triggerer_restart.ticks"
    ]
    facet = done["run"]["facets"]["cocalc"]
    assert facet["exit_code"] == 0 and facet["status"] == "completed"
    assert done["run"]["facets"]["externalQuery"]["externalQueryId"] == facet["job_id"]
    assert SECRET_KEY not in lineage.read_text()


def test_an_example_dag_triggered_by_hand_succeeds(
    deployment: AirflowDeployment, project: str
) -> None:
    """An example DAG as a person triggers it from the UI: no logical date (``{{ ds }}`` would
    be undefined), run by the scheduler on a LocalExecutor worker. (The notebook report is run
    without a logical date in test_manual_runs.py; under a real scheduler its two-second deferral
    can meet a scheduler race of Airflow's own, see "Known issue" in docs/guides/airflow.md.)"""
    deployment.wait_for_dag("cocalc_command_job")
    run_id = deployment.trigger("cocalc_command_job", {"project_id": project, "seconds": 3})
    state = deployment.wait_for_run("cocalc_command_job", run_id, within=240)
    log = deployment.task_log("cocalc_command_job", run_id, "steps")
    assert state == "success", log[-3000:] + (deployment.home / "scheduler.out").read_text()[-6000:]
    assert deployment.query("select logical_date from dag_run where run_id = ?", run_id) == [
        (None,)
    ]
    assert "[stdout] done after 3 steps" in log
    # The task's CoCalc link, as the UI shows it, opens the job's page on the server.
    link = deployment.extra_links("cocalc_command_job", run_id, "steps")["CoCalc project"]
    assert link is not None and re.fullmatch(rf".*/projects/{project}/jobs/[0-9a-f-]{{36}}", link)
    page = requests.get(link, auth=(SECRET_KEY, ""), timeout=30)
    assert page.status_code == 200 and "done after 3 steps" in page.text, link
