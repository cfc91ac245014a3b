"""What every Airflow 3 release the provider supports must do: import, parse the example DAGs,
and wait on a job from the triggerer. ``make test`` runs the whole Airflow suite on the newest
release and on the oldest (Airflow 3.0.6, ``.venv-airflow-oldest``); this module pins the
basics, each of which failed on 3.0 before the fixes named below.

Before the provider imported through ``airflow.providers.common.compat``, a DAG using any of its
operators failed to import on Airflow 3.0 and 3.1 (``AirflowFailException`` is not in
``airflow.sdk.exceptions`` there), and the trigger failed on Airflow 3.0, whose ``BaseHook`` has
no ``aget_connection``.
"""

from __future__ import annotations

import asyncio
import importlib
import uuid
from typing import Any

import pytest

from cocalc_tasks import CocalcClient
from tests.airflow.conftest import DAGS, dagbag

MODULES = (
    "airflow_provider.hooks.cocalc",
    "airflow_provider.operators.cocalc",
    "airflow_provider.operators.job",
    "airflow_provider.operators.notebook",
    "airflow_provider.triggers.cocalc",
)


@pytest.mark.parametrize("module", MODULES)
def test_every_provider_module_imports(module: str) -> None:
    assert importlib.import_module(module) is not None


def test_the_example_dags_parse_without_import_errors() -> None:
    bag = dagbag(DAGS, safe_mode=False)
    assert bag.import_errors == {}
    assert {"cocalc_sage_job", "cocalc_notebook_report", "cocalc_python_xcom"} <= set(bag.dag_ids)


def test_the_trigger_reads_its_connection_and_fires_done(cocalc_conn: str) -> None:
    from airflow_provider.triggers.cocalc import CocalcJobTrigger

    project = str(uuid.uuid4())
    with CocalcClient(project_id=project, host=cocalc_conn, api_key=_key()) as client:
        job = client.submit("echo one; sleep 0.3; exit 4")
    trigger = CocalcJobTrigger(job_id=job.job_id, project_id=project, poll_interval=0.2)

    async def collect() -> list[dict[str, Any]]:
        return [event.payload async for event in trigger.run()]

    assert asyncio.run(collect()) == [
        {"status": "done", "job_id": job.job_id, "project_id": project, "job_status": "completed"}
    ]


def _key() -> str:
    from tests.conftest import SECRET_KEY

    return SECRET_KEY
