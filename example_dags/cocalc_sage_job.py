"""A SageMath job longer than any Jupyter cell may run, as a deferrable exec job.

``scripts/mertens.sage`` computes the Mertens function and the prime count up to ``limit``
(10^7 by default: about 40 s on a 2-core machine; a CoCalc cell stops at 15-30 s). The job
runs in the triggerer's care (``deferrable=True``), so no worker slot is held while it runs;
its progress lines appear in the task log as they are printed. A retried task re-attaches to
the job instead of starting a second one. ``check`` compares the result with known values.

``project_id`` is a param (empty: the connection's ``project_id`` extra): CoCalc runs commands
only in a project.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Param, dag, task

from airflow_provider.operators.job import CocalcRunOperator
from example_dags.mertens import checked


@dag(
    dag_id="cocalc_sage_job",
    schedule=None,
    catchup=False,
    tags=["cocalc", "sage", "example", "long"],
    params={
        "project_id": Param(
            "", type="string", description="CoCalc project (empty: the connection's)"
        ),
        "limit": Param(10**7, type="integer", minimum=10),
        "chunks": Param(10, type="integer", minimum=1),
    },
)
def cocalc_sage_job() -> None:
    mertens = CocalcRunOperator(
        task_id="mertens",
        code_file="scripts/mertens.sage",
        interpreter="sage",
        project_id="{{ params.project_id }}",
        env={"LIMIT": "{{ params.limit }}", "CHUNKS": "{{ params.chunks }}"},
        timeout=1800,
        deferrable=True,
        poll_interval=2.0,
    )

    @task
    def check(result: dict[str, Any]) -> dict[str, int]:
        return checked(result["stdout"])

    check(mertens.output)


dag = cocalc_sage_job()
