"""``make demo`` step: run the example DAGs with ``dag.test()`` against ``COCALC_HOST``."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from cocalc_tasks.testing.airflow import configure, migrate

DAGS = Path(__file__).resolve().parent.parent / "example_dags"
#: Where the demo's executed notebooks stay after it ends.
REPORTS = Path(tempfile.gettempdir()) / "cocalc-demo-reports"


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="airflow-demo-") as home:
        configure(
            Path(home),
            os.environ["COCALC_HOST"],
            os.environ.get("COCALC_API_KEY"),
            dags_folder=DAGS,
        )
        migrate()
        from airflow.models.xcom import XComModel  # noqa: F401  (imports airflow after configure)

        from example_dags import (
            cocalc_command_job,
            cocalc_mapped_snippets,
            cocalc_notebook_report,
            cocalc_python_xcom,
            cocalc_sage_job,
        )

        project = os.environ["COCALC_PROJECT_ID"]
        runs: list[tuple[object, str, dict[str, object] | None]] = [
            (cocalc_python_xcom, "check_stats", None),
            (cocalc_mapped_snippets, "aggregate", None),
            (cocalc_command_job, "steps", {"project_id": project, "seconds": 3}),
            (
                cocalc_notebook_report,
                "check",
                {
                    "project_id": project,
                    "n": 200,
                    "output": f"{REPORTS}/weekly_check-airflow.ipynb",
                },
            ),
        ]
        if os.environ.get("COCALC_DEMO_SAGE"):
            # The example's job is 10^7 (about 40 s); the demo runs a shortened one, deferred.
            conf = {"project_id": project, "limit": 10**6, "chunks": 4}
            runs.append((cocalc_sage_job, "check", conf))
        for module, final_task, run_conf in runs:
            dag = module.dag  # type: ignore[attr-defined]
            run = dag.test(run_conf=run_conf)
            value = xcom(run, final_task)
            if isinstance(value, dict) and "stdout" in value:
                value = value["stdout"].strip().splitlines()[-1]
            print(f"DAG {dag.dag_id}: {run.state}; {final_task} returned {value}")
            if module is cocalc_command_job:
                show_link(run, final_task)
    return 0


def show_link(run: object, task_id: str) -> None:
    """The long job's extra link in the Airflow UI ("CoCalc project"): its job page here."""
    import requests

    url = xcom(run, task_id, key="cocalc_project_url")
    key = os.environ.get("COCALC_API_KEY") or ""
    page = requests.get(str(url), auth=(key, "") if key else None, timeout=30)
    print(f"  extra link of {task_id}: {url} -> HTTP {page.status_code}")


def xcom(run: object, task_id: str, key: str = "return_value") -> object:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter_by(
                run_id=run.run_id,  # type: ignore[attr-defined]
                task_id=task_id,
                key=key,
            )
            .first()
        )
        return XComModel.deserialize_value(row) if row else None


if __name__ == "__main__":
    sys.exit(main())
