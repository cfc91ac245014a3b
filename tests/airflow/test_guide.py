"""The Airflow guide's examples (docs/guides/airflow.md), run as a user would run them: each
``python`` block is a DAG file in a DAG folder, loaded by a DagBag, and every DAG it defines
runs against a local server with a real Sage kernel."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from cocalc_tasks.testing.airflow import connection_env
from tests.airflow.conftest import dagbag
from tests.conftest import SECRET_KEY
from tests.support.guide_examples import AIRFLOW_PAGES, blocks
from tests.support.sage_server import sage_server

LOCAL_BUNDLE = "airflow.dag_processing.bundles.local.LocalDagBundle"


@pytest.mark.parametrize("page", AIRFLOW_PAGES)
def test_every_dag_of_the_guide_loads_and_succeeds(
    page: str, airflow_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    examples = [b for b in blocks(page) if b.lang == "python"]
    assert examples, f"docs/{page} has no python examples"
    folder = tmp_path / "dags"
    folder.mkdir()
    for number, block in enumerate(examples):
        (folder / f"guide_{number}.py").write_text(f"# {block.where}\n{block.code}")
    with sage_server() as url:
        extra = {"project_id": str(uuid.uuid4())}
        for name, value in connection_env(url, SECRET_KEY, extra=extra).items():
            monkeypatch.setenv(name, value)
        # dag.test() syncs the configured DAG bundles: the guide's folder is the one bundle here.
        bundle = {"name": "guide", "classpath": LOCAL_BUNDLE, "kwargs": {"path": str(folder)}}
        monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps([bundle]))
        bag = dagbag(folder, safe_mode=False)
        assert bag.import_errors == {}
        by_file = {Path(dag.fileloc).name for dag in bag.dags.values()}
        assert by_file == {f"guide_{n}.py" for n in range(len(examples))}, "a block without a DAG"
        for dag_id, dag in sorted(bag.dags.items()):
            run = dag.test()
            states = {ti.task_id: ti.state for ti in run.get_task_instances()}
            assert run.state == "success", (dag_id, states)
