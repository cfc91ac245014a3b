"""A task's ``execution_timeout`` stops its CoCalc job, waited on the worker or deferred, for
the run and the notebook operators (``dag.test()``; the real triggerer's case is in
test_real_deployment.py)."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import nbformat
import pytest

from cocalc_tasks import CocalcClient
from tests.airflow.conftest import dagbag
from tests.airflow.test_example_dags import states, xcom
from tests.airflow.test_guide import LOCAL_BUNDLE
from tests.conftest import SECRET_KEY

DAG_FILE = """
from datetime import datetime, timedelta

from airflow.sdk import DAG

from airflow_provider.operators.job import CocalcRunOperator
from airflow_provider.operators.notebook import CocalcNotebookOperator

with DAG("cocalc_deadlines", start_date=datetime(2026, 1, 1), schedule=None, catchup=False):
    CocalcRunOperator(
        task_id="on_worker",
        command="sleep 120",
        project_id="{project}",
        deferrable=False,
        poll_interval=0.5,
        execution_timeout=timedelta(seconds=4),
    )
    CocalcNotebookOperator(
        task_id="deferred_notebook",
        notebook="{notebook}",
        project_id="{project}",
        deferrable=True,
        poll_interval=0.5,
        execution_timeout=timedelta(seconds=8),
    )
"""


def test_execution_timeout_cancels_the_job_on_the_worker_and_deferred(
    airflow_db: Path, cocalc_conn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider.operators.job import JOB_ID_KEY
    from airflow_provider.operators.notebook import NOTEBOOK_RUN_KEY

    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell("import time\ntime.sleep(120)")]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nbformat.write(notebook, tmp_path / "slow.ipynb")
    project = str(uuid.uuid4())
    dag_file = DAG_FILE.replace("{project}", project)
    (tmp_path / "deadlines.py").write_text(dag_file.replace("{notebook}", "slow.ipynb"))
    bundle = {"name": "deadlines", "classpath": LOCAL_BUNDLE, "kwargs": {"path": str(tmp_path)}}
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps([bundle]))
    dag = dagbag(tmp_path, safe_mode=False).get_dag("cocalc_deadlines")
    started = time.monotonic()
    run = dag.test()
    assert states(run) == {"on_worker": "failed", "deferred_notebook": "failed"}
    assert time.monotonic() - started < 100  # the jobs would run 120 s each
    client = CocalcClient(api_key=SECRET_KEY, host=cocalc_conn, project_id=project)
    (job_id,) = xcom(run, "on_worker", JOB_ID_KEY)
    assert client.job(job_id).status == "killed"
    (submitted,) = xcom(run, "deferred_notebook", NOTEBOOK_RUN_KEY)
    assert client.job(submitted["job_id"]).status == "killed"
