"""CocalcNotebookOperator: the example report DAG under dag.test(), deferred through the job
trigger, against the local server with real kernels."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import nbformat
import pytest
import requests

from tests.airflow.conftest import without_airflow_mask_requests
from tests.airflow.test_example_dags import states, xcom
from tests.conftest import SECRET_KEY


def test_the_report_dag_runs_the_notebook_deferred_and_passes_its_results(
    airflow_db: Path, cocalc_conn: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from example_dags import cocalc_notebook_report

    out = tmp_path / "reports" / "weekly.ipynb"
    conf = {"project_id": str(uuid.uuid4()), "n": 300, "output": str(out)}
    run = cocalc_notebook_report.dag.test(run_conf=conf)
    log = capfd.readouterr().out
    assert run.state == "success", states(run)
    (summary,) = xcom(run, "report")
    assert summary["ok"] and summary["output"] == str(out)
    assert summary["parameters"]["n"] == 300  # a number, not the text "300"
    assert summary["results"]["summary"] == {"points": 301, "ok": True}
    assert summary["results"]["max_error"] < 1e-12
    (checked,) = xcom(run, "check")
    assert checked.startswith("301 points") and checked.endswith(str(out))
    # The task's CoCalc link is the job's page, which renders the executed notebook.
    (link,) = xcom(run, "report", key="cocalc_project_url")
    assert link == f"{cocalc_conn}/projects/{conf['project_id']}/jobs/{summary['job_id']}"
    page = requests.get(link + "/notebook", auth=(SECRET_KEY, ""), timeout=30)
    assert page.status_code == 200
    assert "n = 300" in re.sub(r"<[^>]+>", "", page.text)  # the injected parameter cell
    saved = nbformat.read(out, as_version=4)
    nbformat.validate(saved)
    injected = [c for c in saved.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "n = 300" in injected[0].source
    assert any("image/png" in o.get("data", {}) for c in saved.cells for o in c.get("outputs", []))
    assert "CocalcJobTrigger" in log or "trigger" in log.lower()  # it was deferred
    assert SECRET_KEY not in without_airflow_mask_requests(log)
    assert SECRET_KEY not in json.dumps(summary)
    # progress as a person reads it; no warning from the notebook's kernel as it stops
    assert "cell 1 of " in log
    assert "Parent appears to have exited" not in log and "IPKernelApp" not in log


def test_a_failing_cell_fails_the_task_without_retries_and_saves_the_notebook(
    airflow_db: Path, cocalc_conn: str, tmp_path: Path
) -> None:
    from airflow.providers.common.compat.sdk import AirflowFailException

    from airflow_provider.operators.notebook import CocalcNotebookOperator
    from tests.airflow.test_operator import context
    from tests.notebooks.builders import failing

    source, out = tmp_path / "failing.ipynb", tmp_path / "failed-run.ipynb"
    nbformat.write(failing(), source)
    op = CocalcNotebookOperator(
        task_id="nb",
        notebook=str(source),
        output=str(out),
        project_id=str(uuid.uuid4()),
        deferrable=False,
        poll_interval=0.5,
    )
    # AirflowFailException: the task's retries are skipped (the cell would raise again).
    with pytest.raises(AirflowFailException, match="cell 2 of the notebook raised ValueError"):
        op.execute(context())  # type: ignore[arg-type]
    assert len(nbformat.read(out, as_version=4).cells) == 3


def test_the_extra_link_points_at_an_http_output(airflow_db: Path) -> None:
    from airflow_provider.get_provider_info import get_provider_info
    from airflow_provider.operators.notebook import (
        CocalcNotebookLink,
        CocalcNotebookOperator,
        _push_link,
    )

    assert (
        "airflow_provider.operators.notebook.CocalcNotebookLink"
        in get_provider_info()["extra-links"]
    )
    from airflow_provider.operators.cocalc import CocalcProjectLink

    op = CocalcNotebookOperator(task_id="x", notebook="a.ipynb")
    links = [type(link) for link in op.operator_extra_links]
    assert links == [CocalcProjectLink, CocalcNotebookLink]
    pushed: dict[str, Any] = {}

    class TI:
        def xcom_push(self, key: str, value: Any) -> None:
            pushed[key] = value

    _push_link("https://reports.example.org/weekly.ipynb", {"ti": TI()})  # type: ignore[arg-type]
    _push_link("/tmp/local.ipynb", {"ti": TI()})  # type: ignore[arg-type]
    assert pushed == {"cocalc_notebook_url": "https://reports.example.org/weekly.ipynb"}


def test_the_next_try_reattaches_to_the_running_notebook(
    airflow_db: Path, cocalc_conn: str, tmp_path: Path
) -> None:
    """A worker that died while its notebook ran: the next try of the task instance finds the
    run in the task state store and waits for that job instead of running the notebook again
    (Airflow 3.3+; below it every try starts a run, as the guide says)."""
    from airflow.providers.common.compat.sdk import TaskDeferred

    from airflow_provider.operators.notebook import CocalcNotebookOperator
    from cocalc_tasks import CocalcClient
    from tests.airflow.conftest import resumable
    from tests.airflow.test_job_operator import StateStore, context
    from tests.notebooks.builders import notebook

    source = tmp_path / "counted.ipynb"
    cells = [
        ("import time\nopen('starts.log', 'a').write('start\\n')", []),
        ("time.sleep(3)\nanswer = 6 * 7\nanswer", ["result:answer"]),
    ]
    nbformat.write(notebook(cells), source)
    project = str(uuid.uuid4())

    def operator(**options: Any) -> CocalcNotebookOperator:
        return CocalcNotebookOperator(
            task_id="report",
            notebook=str(source),
            project_id=project,
            output=str(tmp_path / "out.ipynb"),
            poll_interval=0.3,
            **options,
        )

    store = StateStore()
    with pytest.raises(TaskDeferred) as deferred:  # the first try defers, then its worker dies
        operator(deferrable=True).execute(context(store))  # type: ignore[arg-type]
    first = deferred.value.trigger.serialize()[1]["job_id"]
    value = operator(deferrable=False).execute(context(store))  # type: ignore[arg-type]
    assert value["ok"] and value["results"]["answer"] == 42
    client = CocalcClient(api_key=SECRET_KEY, host=cocalc_conn, project_id=project)
    starts = client.exec("cat starts.log").stdout.count("start")
    assert (value["job_id"] == first) is resumable()
    assert starts == (1 if resumable() else 2)
    assert nbformat.read(tmp_path / "out.ipynb", as_version=4).cells[1].outputs


def test_a_resubmitted_notebook_attaches_through_its_job_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Where the server honours job keys (CoCalc's rewrite), two tries' submits of the same
    task instance get one job: the work folder comes from the key, so the command matches."""
    from unittest import mock

    from airflow_provider.operators.notebook import CocalcNotebookOperator
    from cocalc_tasks.server.local_server import LocalServer
    from cocalc_tasks.testing.airflow import connection_env
    from tests.notebooks.builders import notebook
    from tests.server.test_flavors import V2_KEY

    source = tmp_path / "slow.ipynb"
    nbformat.write(notebook([("import time\ntime.sleep(2)", [])]), source)
    args = ["--flavor", "cocalc-ai", "--pool-size", "0"]
    with LocalServer(data_dir=tmp_path / "server", api_keys=[V2_KEY], args=args) as server:
        for name, value in connection_env(server.url, V2_KEY).items():
            monkeypatch.setenv(name, value)
        ti = mock.MagicMock(dag_id="d", task_id="t", run_id="manual__1", map_index=-1)
        ids = [
            CocalcNotebookOperator(
                task_id="t", notebook=str(source), project_id=str(uuid.UUID(int=8))
            ).submit_job({"ti": ti})["job_id"]  # type: ignore[arg-type]
            for _ in range(2)
        ]
        assert ids[0] == ids[1]
