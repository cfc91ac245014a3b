"""OpenLineage: with Airflow's OpenLineage provider and a file transport, the run, notebook and
execute operators report the CoCalc job, kernel and exit code as a run facet, the job as an
external query in the host's and project's namespace, and a notebook's input and output as
datasets (``dag.test()`` in a process of its own; the real scheduler's case is in
test_real_deployment.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from tests.airflow.conftest import DAGS
from tests.conftest import ROOT, SECRET_KEY

DAG_FILE = """
from datetime import datetime

from airflow.sdk import DAG

from airflow_provider.operators.cocalc import CocalcExecuteOperator
from airflow_provider.operators.job import CocalcRunOperator
from airflow_provider.operators.notebook import CocalcNotebookOperator

with DAG("cocalc_lineage", start_date=datetime(2026, 1, 1), schedule=None):
    CocalcRunOperator(task_id="job", code="print(6 * 7)", project_id="{project}")
    CocalcNotebookOperator(
        task_id="report",
        notebook="weekly_check.ipynb",
        parameters={{"n": 20}},
        output="{output}",
        project_id="{project}",
    )
    CocalcExecuteOperator(task_id="cell", kernel="python3", input="2 + 3")
"""


def completes(events: list[dict[str, Any]], task: str) -> dict[str, Any]:
    (event,) = [
        e
        for e in events
        if e.get("eventType") == "COMPLETE" and e["job"]["name"] == f"cocalc_lineage.{task}"
    ]
    return event


def test_the_operators_report_their_jobs_and_datasets_to_openlineage(
    airflow_db: Path, cocalc_conn: str, tmp_path: Path
) -> None:
    from cocalc_tasks.testing.airflow import connection_env

    project = str(uuid.uuid4())
    dags, output = tmp_path / "dags", tmp_path / "out" / "report.ipynb"
    dags.mkdir()
    shutil.copy(DAGS / "notebooks" / "weekly_check.ipynb", dags)
    (dags / "lineage.py").write_text(DAG_FILE.format(project=project, output=output))
    events_file = tmp_path / "lineage.jsonl"
    env = {
        **os.environ,
        **connection_env(cocalc_conn, SECRET_KEY),
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(events_file), "append": True}
        ),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "cocalc-tasks-tests",
    }
    done = subprocess.run(
        [sys.executable, "-m", "tests.support.lineage_run", str(dags), "cocalc_lineage"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert "dag run state: success" in done.stdout, done.stdout[-3000:] + done.stderr[-3000:]
    events = [json.loads(line) for line in events_file.read_text().splitlines() if line.strip()]
    host = cocalc_conn.split("://", 1)[1]

    job = completes(events, "job")
    facet = job["run"]["facets"]["cocalc"]
    assert facet["host"] == f"cocalc://{host}" and facet["project_id"] == project
    assert facet["kernel"] == "python3" and facet["exit_code"] == 0
    assert facet["status"] == "completed" and facet["job_id"]
    query = job["run"]["facets"]["externalQuery"]
    assert query == {
        **query,
        "externalQueryId": facet["job_id"],
        "source": f"cocalc://{host}/{project}",
    }

    report = completes(events, "report")
    assert report["run"]["facets"]["cocalc"]["kernel"] == "python3"
    assert [(d["namespace"], d["name"]) for d in report["inputs"]] == [
        ("file", str(dags / "weekly_check.ipynb"))
    ]
    assert [(d["namespace"], d["name"]) for d in report["outputs"]] == [("file", str(output))]

    cell = completes(events, "cell")["run"]["facets"]["cocalc"]
    assert cell["kernel"] == "python3" and cell["status"] == "ok"
    assert SECRET_KEY not in events_file.read_text()
