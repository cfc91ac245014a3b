"""A failed task logs its own error and nothing after it: no ``XCom not found`` for the project
link, whichever operator failed and however early."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.airflow.conftest import dagbag
from tests.airflow.test_guide import LOCAL_BUNDLE

DAG_FILE = """
from datetime import datetime

from airflow.sdk import DAG

from airflow_provider.operators.cocalc import CocalcExecuteOperator
from airflow_provider.operators.job import CocalcRunOperator
from airflow_provider.operators.notebook import CocalcNotebookOperator

with DAG("failing_steps", start_date=datetime(2026, 1, 1), schedule=None, catchup=False):
    CocalcExecuteOperator(task_id="remote_error", kernel="python3", input="1/0")
    CocalcExecuteOperator(task_id="unknown_kernel", kernel="no-such-kernel", input="1")
    CocalcRunOperator(
        task_id="bad_project", command="true", project_id="not-a-uuid", deferrable=False
    )
    CocalcNotebookOperator(
        task_id="missing_notebook",
        notebook="project:nope.ipynb",
        project_id="6e75dbf1-0342-4249-9dce-6b21648656e9",
        deferrable=False,
    )
"""


def test_failed_tasks_log_no_missing_xcom(
    airflow_db: Path,
    cocalc_conn: str,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "failing_steps.py").write_text(DAG_FILE)
    # dag.test() syncs the configured DAG bundles: this folder is the one bundle here.
    bundle = {"name": "failing", "classpath": LOCAL_BUNDLE, "kwargs": {"path": str(tmp_path)}}
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps([bundle]))
    dag = dagbag(tmp_path, safe_mode=False).get_dag("failing_steps")
    run = dag.test()
    log = capfd.readouterr().out
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert set(states.values()) == {"failed"}, states
    assert "ZeroDivisionError" in log and "no-such-kernel" in log
    assert "project_id is not a valid UUID" in log and "nope.ipynb" in log
    assert "XCom not found" not in log
