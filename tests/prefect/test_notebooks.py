"""The run_notebook task and the example report flow, against the local server."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
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
