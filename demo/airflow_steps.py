"""``make demo`` step: run the example DAGs with ``dag.test()`` against ``COCALC_HOST``."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from cocalc_tasks.testing.airflow import configure, migrate

DAGS = Path(__file__).resolve().parent.parent / "example_dags"


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

        from example_dags import cocalc_mapped_snippets, cocalc_python_xcom

        for module, final_task in (
            (cocalc_python_xcom, "check_stats"),
            (cocalc_mapped_snippets, "aggregate"),
        ):
            run = module.dag.test()
            print(
                f"DAG {module.dag.dag_id}: {run.state}; {final_task} returned "
                f"{xcom(run, final_task)}"
            )
    return 0


def xcom(run: object, task_id: str) -> object:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter_by(
                run_id=run.run_id,
                task_id=task_id,
                key="return_value",  # type: ignore[attr-defined]
            )
            .first()
        )
        return XComModel.deserialize_value(row) if row else None


if __name__ == "__main__":
    sys.exit(main())
