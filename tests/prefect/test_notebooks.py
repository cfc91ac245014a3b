"""The run_notebook task and the example report flow, against the local server."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import nbformat
import pytest
import requests
from prefect import flow

from cocalc_tasks.errors import CocalcNotebookError
from prefect_tasks import CocalcCredentials, run_notebook
from tests.conftest import SECRET_KEY
from tests.notebooks.builders import failing, notebook
from tests.prefect.helpers import artifacts, run_logs

PROJECT_ID = "6e75dbf1-0342-4249-9dce-6b21648656e9"


def test_the_report_flow_saves_the_notebook_and_links_it_with_its_results(
    credentials: CocalcCredentials, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from example_dags.prefect_flows import notebook_report

    monkeypatch.setenv("COCALC_HOST", credentials.host)
    monkeypatch.setenv("COCALC_API_KEY", SECRET_KEY)
    monkeypatch.setenv("COCALC_PROJECT_ID", PROJECT_ID)
    out = tmp_path / "report.ipynb"
    state = notebook_report(n=250, output=str(out), return_state=True)
    value = state.result()
    assert value["output"] == str(out)
    logs = "\n".join(run_logs(state.state_details.flow_run_id))
    assert "cell 1 of " in logs  # progress as a person reads it
    assert "Parent appears to have exited" not in logs and "IPKernelApp" not in logs
    assert value["summary"] == {"points": 251, "ok": True} and value["max_error"] < 1e-12
    nbformat.validate(nbformat.read(out, as_version=4))
    (artifact,) = artifacts("cocalc-notebook")[:1]
    assert str(out) in artifact.data
    assert '| `summary` | `{"points": 251, "ok": true}` |' in artifact.data
    assert SECRET_KEY not in artifact.data
    # The artifact links the run's job page, which renders the executed notebook.
    page = re.search(r"- page: \[(\S+)\]\((\S+)\)", artifact.data)
    assert page and page.group(1) == page.group(2)
    assert re.fullmatch(rf"{credentials.host}/projects/{PROJECT_ID}/jobs/[0-9a-f-]{{36}}", page[1])
    rendered = requests.get(page[1] + "/notebook", auth=(SECRET_KEY, ""), timeout=30)
    assert rendered.status_code == 200 and "251" in rendered.text


def test_a_failing_cell_fails_the_task_once(credentials: CocalcCredentials, tmp_path: Path) -> None:
    creds = credentials.model_copy(update={"project_id": PROJECT_ID})
    out = tmp_path / "failed.ipynb"

    @flow
    def f() -> None:
        run_notebook(creds, failing(), output=str(out), artifact_key=None)

    state = f(return_state=True)
    assert state.is_failed()
    with pytest.raises(CocalcNotebookError, match="cell 2 of the notebook raised ValueError"):
        state.result()
    assert len(nbformat.read(out, as_version=4).cells) == 3


def test_the_executed_notebook_goes_to_an_object_storage_url(
    credentials: CocalcCredentials,
) -> None:
    """Any fsspec URL is a place for the output (memory:// here; s3://, gs://... alike)."""
    import fsspec

    creds = credentials.model_copy(update={"project_id": PROJECT_ID})
    url = "memory://cocalc-reports/run.ipynb"

    @flow
    def f() -> str | None:
        nb = notebook([("n = 1", ["parameters"]), ("n * 3", ["result"])])
        return run_notebook(creds, nb, {"n": 7}, output=url).output

    assert f() == url
    with fsspec.open(url, "rb") as handle:
        saved = nbformat.reads(handle.read().decode("utf-8"), as_version=4)
    nbformat.validate(saved)
    assert saved.cells[2].outputs[0]["data"]["text/plain"] == "21"


def test_a_later_try_attaches_to_the_notebook_its_call_started(
    credentials: CocalcCredentials, tmp_path: Path
) -> None:
    """An earlier try of the task call submitted the notebook and recorded it on the flow run,
    then its process died: ``run_notebook`` in the same call finds the job in the flow run's
    labels and collects it, and the notebook ran once. The server here (CoCalc master's
    flavour) ignores job keys, so the labels alone do it."""
    from prefect import task

    from cocalc_tasks import CocalcClient
    from cocalc_tasks.notebooks import submit_notebook
    from prefect_tasks.jobs import record_job, task_call, task_job_key

    project = str(uuid.uuid4())
    creds = credentials.model_copy(update={"project_id": project})
    source = notebook(
        [
            ("import time\nopen('starts.log', 'a').write('start\\n')\ntime.sleep(2)", []),
            ("6 * 7", ["result:answer"]),
        ]
    )

    @task
    def crashed_then_retried() -> tuple[str, str]:
        with creds.get_client() as client:  # the first try: submitted, recorded, then gone
            first = submit_notebook(client, source, job_key=task_job_key())
        record_job(first.job, call=task_call())
        result = run_notebook.fn(creds, source, output=str(tmp_path / "out.ipynb"))
        assert result.results["answer"] == 42
        return first.job_id, result.job_id

    @flow
    def report() -> tuple[str, str]:
        return crashed_then_retried()

    first, attached = report()
    assert first == attached
    client = CocalcClient(api_key=SECRET_KEY, host=credentials.host, project_id=project)
    assert client.exec("cat starts.log").stdout.count("start") == 1
    assert nbformat.read(tmp_path / "out.ipynb", as_version=4).cells[1].outputs
