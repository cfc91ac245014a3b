"""A parameterised notebook as a DAG step: run on CoCalc, kept as the report.

``notebooks/weekly_check.ipynb`` has a cell tagged ``parameters``; the operator injects ``n``
and ``title`` after it, runs every cell in the project as one job (deferred: no worker slot
is held while it runs), saves the executed notebook, and pushes its path and the values of the
cells tagged ``result`` to XCom for the next task.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Param, dag, task

from airflow_provider.operators.notebook import CocalcNotebookOperator


@dag(
    dag_id="cocalc_notebook_report",
    schedule=None,
    catchup=False,
    tags=["cocalc", "example", "notebook"],
    # {{ params.n }} must reach the notebook as a number, not the text "1000".
    render_template_as_native_obj=True,
    params={
        "project_id": Param(
            "", type="string", description="CoCalc project (empty: the connection's)"
        ),
        "n": Param(1000, type="integer", minimum=1),
        "output": Param(
            "",
            type="string",
            description="where the executed notebook goes: a path (relative: the worker's "
            "working directory) or an fsspec URL such as s3://bucket/reports/x.ipynb; empty: "
            "reports/weekly_check-YYYYMMDD.ipynb",
        ),
    },
)
def cocalc_notebook_report() -> None:
    report = CocalcNotebookOperator(
        task_id="report",
        notebook="notebooks/weekly_check.ipynb",
        parameters={"n": "{{ params.n }}", "title": "weekly check {{ dag_run.run_after | ds }}"},
        # A param's default is not rendered, so the dated name is made here. run_after, not
        # ds: a run triggered by hand has no logical date (so no ds) in Airflow 3; every run
        # has a run_after (a scheduled run's is its interval's end).
        output="{{ params.output or 'reports/weekly_check-'"
        " ~ (dag_run.run_after | ds_nodash) ~ '.ipynb' }}",
        project_id="{{ params.project_id }}",
        deferrable=True,
        poll_interval=1.0,
    )

    @task
    def check(summary: dict[str, Any]) -> str:
        values = summary["results"]
        if not values["summary"]["ok"]:
            raise ValueError(f"the identity failed: max error {values['max_error']}")
        points, error = values["summary"]["points"], values["max_error"]
        return f"{points} points, max error {error:.1e}: {summary['output']}"

    check(report.output)


dag = cocalc_notebook_report()
