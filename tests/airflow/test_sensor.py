"""Fire and forget, then a sensor: ``wait_for_completion=False`` on the run and notebook
operators, and ``CocalcJobSensor`` in poke, reschedule and deferrable modes, under
``dag.test()`` against the local server's real jobs and kernels."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest

from cocalc_tasks import CocalcClient
from tests.airflow.conftest import DAGS, dagbag
from tests.airflow.test_example_dags import states, xcom
from tests.airflow.test_guide import LOCAL_BUNDLE
from tests.conftest import SECRET_KEY

DAG_FILE = """
from datetime import datetime

from airflow.sdk import DAG

from airflow_provider.operators.job import CocalcRunOperator
from airflow_provider.operators.notebook import CocalcNotebookOperator
from airflow_provider.sensors.cocalc import CocalcJobSensor

PROJECT = "{project}"

with DAG("cocalc_fire_and_forget", start_date=datetime(2026, 1, 1), schedule=None):
    start = CocalcRunOperator(
        task_id="start",
        command="echo started >> runs.log; sleep 3; echo done-output",
        project_id=PROJECT,
        wait_for_completion=False,
    )
    poke = CocalcJobSensor(task_id="poke", job=start.output, poke_interval=0.5)
    deferred = CocalcJobSensor(
        task_id="deferred", job=start.output, deferrable=True, poke_interval=0.5
    )
    by_id = CocalcJobSensor(
        task_id="by_id",
        job="{{{{ ti.xcom_pull(task_ids='start', key='cocalc_job_id') }}}}",
        project_id=PROJECT,
        mode="reschedule",
        poke_interval=1,
    )
    start >> [poke, deferred, by_id]

    failing = CocalcRunOperator(
        task_id="failing", command="echo oops >&2; exit 3", project_id=PROJECT,
        wait_for_completion=False,
    )
    CocalcJobSensor(task_id="judged", job=failing.output, poke_interval=0.5)

    report = CocalcNotebookOperator(
        task_id="report",
        notebook="weekly_check.ipynb",
        parameters={{"n": 50}},
        output="{output}",
        project_id=PROJECT,
        wait_for_completion=False,
    )
    CocalcJobSensor(task_id="report_done", job=report.output, deferrable=True, poke_interval=0.5)

    slow = CocalcRunOperator(
        task_id="slow", command="sleep 60", project_id=PROJECT, wait_for_completion=False
    )
    CocalcJobSensor(
        task_id="gives_up", job=slow.output, deferrable=True, poke_interval=0.5, timeout=3
    )
"""


@pytest.fixture
def run(
    airflow_db: Path,
    cocalc_conn: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[Any, str, Path]:
    project = str(uuid.uuid4())
    output = tmp_path / "out" / "report.ipynb"
    dags = tmp_path / "dags"
    dags.mkdir()
    shutil.copy(DAGS / "notebooks" / "weekly_check.ipynb", dags)
    (dags / "fire.py").write_text(DAG_FILE.format(project=project, output=output))
    bundle = {"name": "fire", "classpath": LOCAL_BUNDLE, "kwargs": {"path": str(dags)}}
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps([bundle]))
    dag = dagbag(dags, safe_mode=False).get_dag("cocalc_fire_and_forget")
    return dag.test(), project, output


def test_fire_and_forget_then_sensors_judge_as_the_operators_would(
    run: tuple[Any, str, Path], cocalc_conn: str
) -> None:
    dag_run, project, output = run
    client = CocalcClient(api_key=SECRET_KEY, host=cocalc_conn, project_id=project)
    assert states(dag_run) == {
        "start": "success",
        "poke": "success",
        "deferred": "success",
        "by_id": "success",
        "failing": "success",  # it only started the job
        "judged": "failed",  # exit 3, judged as CocalcRunOperator judges it
        "report": "success",
        "report_done": "success",
        "slow": "success",
        "gives_up": "failed",  # the sensor's timeout
    }
    (started,) = xcom(dag_run, "start")
    assert set(started) == {"job_id", "project_id"} and started["project_id"] == project
    # Every mode returned the run operator's own summary of the one job.
    for task in ("poke", "deferred", "by_id"):
        (summary,) = xcom(dag_run, task)
        assert summary["job_id"] == started["job_id"] and summary["exit_code"] == 0, task
        assert summary["stdout"] == "done-output\n", task
    assert client.exec("cat runs.log").stdout.count("started") == 1  # it ran once
    # The notebook's run record: the sensor saved the executed notebook and its results.
    (summary,) = xcom(dag_run, "report_done")
    assert summary["ok"] and summary["output"] == str(output) and output.exists()
    assert summary["results"]["summary"] == {"points": 51, "ok": True}
    # A sensor only watches: the job it gave up on still runs.
    (slow,) = xcom(dag_run, "slow")
    assert client.job(slow["job_id"]).status == "running"
    client.cancel(slow["job_id"])
