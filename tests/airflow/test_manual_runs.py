"""Every example DAG as a person triggers it from the UI or ``airflow dags trigger``: a manual
run of Airflow 3 has no logical date (``dag.test()`` would set one), so ``{{ ds }}`` and its
kin are undefined there. Each DAG runs with its default params, against real Sage."""

from __future__ import annotations

import importlib
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.airflow.test_example_dags import states
from tests.conftest import SECRET_KEY
from tests.support.sage_server import sage_server

#: What a person would type in the trigger form: only what has no usable default.
CONF: dict[str, dict[str, Any]] = {
    "cocalc_command_job": {"seconds": 2},
    "cocalc_mapped_snippets": {},
    "cocalc_notebook_report": {},
    "cocalc_python_xcom": {},
    "cocalc_sage": {},
    "cocalc_sage_job": {"limit": 10**4, "chunks": 2},
}


def test_the_list_is_every_example_dag() -> None:
    from tests.airflow.conftest import DAGS, dagbag

    assert set(dagbag(DAGS).dags) == set(CONF)


@pytest.fixture(scope="module")
def sage_url() -> Any:
    with sage_server() as url:
        yield url


@pytest.mark.parametrize("dag_id", sorted(CONF))
def test_an_example_dag_succeeds_when_triggered_by_hand(
    dag_id: str,
    sage_url: str,
    airflow_db: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from cocalc_tasks.testing.airflow import connection_env

    extra = {"project_id": str(uuid.uuid4())}  # the DAGs' empty project_id means the connection's
    for name, value in connection_env(sage_url, SECRET_KEY, extra=extra).items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)  # where a DAG writes relative outputs (the notebook report)
    dag = importlib.import_module(f"example_dags.{dag_id}").dag
    run = dag.test(logical_date=None, run_conf=CONF[dag_id])
    assert run.logical_date is None  # as a manual trigger: no logical date
    assert run.state == "success", states(run)
    if dag_id == "cocalc_notebook_report":  # its default output: a dated name, rendered
        (report,) = (tmp_path / "reports").glob("weekly_check-*.ipynb")
        assert report.name == f"weekly_check-{run.run_after:%Y%m%d}.ipynb"
