"""Job DAGs end to end: dag.test() with the trigger running, and a worker killed mid-job."""

from __future__ import annotations

import inspect
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cocalc_tasks import CocalcClient
from tests.airflow.conftest import resumable, without_airflow_mask_requests
from tests.airflow.test_example_dags import states, xcom
from tests.conftest import ROOT, SECRET_KEY


def test_the_sage_job_dag_defers_streams_and_checks_on_real_sage(
    airflow_db: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    from cocalc_tasks.testing.airflow import connection_env
    from tests.support.sage_server import sage_server

    project = str(uuid.uuid4())
    with sage_server() as url:
        for name, value in connection_env(url, SECRET_KEY).items():
            monkeypatch.setenv(name, value)
        from example_dags import cocalc_sage_job

        conf = {"project_id": project, "limit": 10**5, "chunks": 4}
        run = cocalc_sage_job.dag.test(run_conf=conf)
    log = capfd.readouterr().out
    assert run.state == "success", states(run)
    assert xcom(run, "check") == [{"limit": 100000, "mertens": -48, "primes": 9592}]
    (summary,) = xcom(run, "mertens")
    lines = (ROOT / "example_dags/scripts/mertens.sage").read_text().count("\n")
    assert summary["exit_code"] == 0 and summary["command"] == f"sage script ({lines} lines)"
    # The trigger ran (dag.test runs it in line) and streamed each progress line once.
    assert "running trigger in line" in log.lower() or "CocalcJobTrigger" in log
    chunks = re.findall(r"\[stdout\] (chunk \d/4: M\(\d+\) = -?\d+, pi\(\d+\) = \d+)", log)
    assert chunks == [line for line in summary["stdout"].splitlines() if line.startswith("chunk")]
    assert len(chunks) == 4
    assert SECRET_KEY not in without_airflow_mask_requests(log)
    assert SECRET_KEY not in json.dumps(summary)


def test_a_worker_killed_mid_job_is_retried_onto_the_same_job(
    airflow_db: Path, cocalc_conn: str
) -> None:
    """SIGKILL the process running the task while its job runs; the retry of the same task
    instance attaches to that job: the command starts exactly once (Airflow 3.3+; below it the
    retry submits a job of its own, as the Airflow guide says)."""
    project = str(uuid.uuid4())
    client = CocalcClient(api_key=SECRET_KEY, host=cocalc_conn, project_id=project)
    logical_date = datetime.now(UTC).replace(microsecond=0)
    conf = json.dumps({"project_id": project, "seconds": 8})
    command = [sys.executable, "-m", "tests.support.airflow_worker", "cocalc_command_job"]
    worker = subprocess.Popen(
        [*command, logical_date.isoformat(), conf],
        cwd=ROOT,
        env=os.environ.copy(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and worker.poll() is None:
            if client.exec("cat runs.log 2>/dev/null || true").stdout.count("started") == 1:
                break
            time.sleep(0.3)
        time.sleep(1.5)  # mid-job: the job runs 8 s
        assert worker.poll() is None, worker.stdout.read() if worker.stdout else ""
        worker.send_signal(signal.SIGKILL)
        first_log = worker.communicate(timeout=30)[0]
    finally:
        if worker.poll() is None:
            worker.kill()
    assert "[stdout] step 1/8" in first_log  # it streamed before it died
    from example_dags import cocalc_command_job

    state, try_number = retry(cocalc_command_job.dag, logical_date, "steps")
    assert (state, try_number) == ("success", 2)  # the same task instance's next try
    runs = client.exec("cat runs.log").stdout.count("started")
    assert runs == (1 if resumable() else 2)  # exactly one remote run, where jobs resume
    (summary,) = xcom_by_date(cocalc_command_job.dag.dag_id, logical_date, "steps")
    assert summary["stdout"].splitlines()[-1] == "done after 8 steps"
    assert summary["stdout"].count("step 1/8") == 1


def retry(dag: Any, logical_date: datetime, task_id: str) -> tuple[str, int]:
    """What the scheduler does for a task instance whose worker died: schedule its next try
    and run it (here with dag.test()'s own task runner, in this process)."""
    from airflow.models.dagrun import DagRun
    from airflow.sdk.definitions.dag import _run_task
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState

    with create_session() as session:
        run = session.query(DagRun).filter_by(dag_id=dag.dag_id, logical_date=logical_date).one()
        ti = run.get_task_instance(task_id, session=session)
        assert ti is not None and ti.state == TaskInstanceState.RUNNING  # its worker is gone
        ti.try_number += 1
        ti.state = TaskInstanceState.SCHEDULED
        session.commit()
        if "task" in inspect.signature(_run_task).parameters:  # Airflow 3.1+
            _run_task(ti=ti, task=dag.task_dict[task_id], run_triggerer=True)
        else:  # Airflow 3.0 takes the task from the task instance
            ti.task = dag.task_dict[task_id]
            _run_task(ti=ti, run_triggerer=True)
        session.expire_all()
        ti = run.get_task_instance(task_id, session=session)
        return str(ti.state), int(ti.try_number)


def xcom_by_date(dag_id: str, logical_date: datetime, task_id: str) -> list[Any]:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        run = session.query(DagRun).filter_by(dag_id=dag_id, logical_date=logical_date).one()
        return xcom(run, task_id)
