"""Every example DAG under dag.test() against the local server with real kernels."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.airflow.conftest import DAGS, dagbag
from tests.conftest import SECRET_KEY
from tests.support.sage_stub import FACTOR_SETUP


def xcom(run: Any, task_id: str, key: str = "return_value") -> list[Any]:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = (
            session.query(XComModel)
            .filter_by(run_id=run.run_id, task_id=task_id, key=key)
            .order_by(XComModel.map_index)
            .all()
        )
        return [XComModel.deserialize_value(row) for row in rows]


def states(run: Any) -> dict[str, str]:
    return {
        ti.task_id + (f"[{ti.map_index}]" if ti.map_index >= 0 else ""): ti.state
        for ti in run.get_task_instances()
    }


@pytest.fixture
def dags(airflow_db: Path, cocalc_conn: str) -> Any:
    from example_dags import cocalc_mapped_snippets, cocalc_python_xcom, cocalc_sage

    return cocalc_python_xcom.dag, cocalc_mapped_snippets.dag, cocalc_sage.dag


def test_python_xcom_dag(dags: Any) -> None:
    run = dags[0].test()
    assert run.state == "success", states(run)
    assert states(run) == {"compute_stats": "success", "check_stats": "success"}
    (stats,) = xcom(run, "check_stats")
    assert stats["mean"] == 3.25 and abs(stats["stdev"] - 1.3919410907) < 1e-9
    (raw,) = xcom(run, "compute_stats")
    assert raw["kernel"] == "python3" and json.loads(raw["stdout"]) == stats


def test_mapped_dag(dags: Any) -> None:
    run = dags[1].test()
    assert run.state == "success", states(run)
    mapped = xcom(run, "run_snippet")
    assert [int(r["text"]) for r in mapped] == [
        sum(k * k for k in range(n)) for n in (10, 100, 1000)
    ]
    (total,) = xcom(run, "aggregate")
    assert total["total"] == sum(int(r["text"]) for r in mapped)


def test_sage_dag_with_python3_kernel(dags: Any) -> None:
    run = dags[2].test(run_conf={"kernel": "python3", "n": 2023, "setup": [FACTOR_SETUP]})
    assert run.state == "success", states(run)
    assert xcom(run, "check") == ["7 * 17^2"]


def test_sage_dag_fails_cleanly_on_a_missing_kernel(dags: Any) -> None:
    run = dags[2].test(run_conf={"kernel": "sage-10.4"})  # no Sage alias on this server
    assert states(run)["factor"] == "failed"


def test_no_key_in_xcom_or_task_logs(airflow_db: Path, dags: Any) -> None:
    dags[0].test()
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        values = [
            json.dumps(XComModel.deserialize_value(r), default=str)
            for r in session.query(XComModel).all()
        ]
    assert values and not any(SECRET_KEY in v for v in values)
    logs = [p.read_text(errors="replace") for p in (airflow_db / "logs").rglob("*") if p.is_file()]
    assert not any(SECRET_KEY in text for text in logs)


def test_sage_dag_on_real_sage(airflow_db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cocalc_tasks.testing.airflow import connection_env
    from tests.support.sage_server import sage_server

    with sage_server() as url:
        for name, value in connection_env(url, SECRET_KEY).items():
            monkeypatch.setenv(name, value)
        from example_dags import cocalc_sage

        run = cocalc_sage.dag.test()  # the DAG's defaults: kernel sage-10.4, n 2023
    assert run.state == "success", states(run)
    assert xcom(run, "check") == ["7 * 17^2"]
    (raw,) = xcom(run, "factor")
    assert raw["kernel"] == "sage-10.4" and raw["outputs"] == [{"data": {"text/plain": "7 * 17^2"}}]


@pytest.mark.parametrize("safe_mode", [True, False])
def test_dags_folder_parses_cleanly_as_a_user_would_point_at_it(safe_mode: bool) -> None:
    """dags_folder = example_dags, with Airflow 3's default (glob) .airflowignore: every DAG
    loads, nothing fails to import (the Prefect flows are ignored), nothing else is a DAG."""
    bag = dagbag(DAGS, safe_mode=safe_mode)
    assert bag.import_errors == {}
    assert set(bag.dag_ids) == {
        "cocalc_python_xcom",
        "cocalc_mapped_snippets",
        "cocalc_sage",
        "cocalc_sage_job",
        "cocalc_command_job",
        "cocalc_notebook_report",
    }


@pytest.mark.parametrize("flavor", ["master", "cocalc-ai"])
def test_the_same_dag_runs_against_both_flavours(
    airflow_db: Path, monkeypatch: pytest.MonkeyPatch, flavor: str
) -> None:
    """CoCalc's rewrite has no /api/v2/jupyter: the unchanged DAG gets there through the
    project bridge (api="auto"), with a v2-format key and the connection's project."""
    import uuid

    from cocalc_tasks.server.local_server import LocalServer
    from cocalc_tasks.testing.airflow import connection_env

    key = "sk-cc-v2.dag.flavour0test0secret" if flavor == "cocalc-ai" else SECRET_KEY
    args = ["--kernels", "python3", "--flavor", flavor]
    with LocalServer(api_keys=[key], args=args) as server:
        project = {"project_id": str(uuid.uuid4())}
        for name, value in connection_env(server.url, key, extra=project).items():
            monkeypatch.setenv(name, value)
        from example_dags import cocalc_python_xcom

        run = cocalc_python_xcom.dag.test()
    assert run.state == "success", states(run)
    (stats,) = xcom(run, "check_stats")
    assert stats["mean"] == 3.25 and abs(stats["stdev"] - 1.3919410907) < 1e-9
