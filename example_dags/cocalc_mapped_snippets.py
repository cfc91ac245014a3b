"""Map one operator over several snippets (dynamic task mapping), then aggregate the results."""

from __future__ import annotations

from typing import Any

from airflow.sdk import dag, task

from airflow_provider.operators.cocalc import CocalcExecuteOperator

SNIPPETS = [f"sum(k * k for k in range({n}))" for n in (10, 100, 1000)]


@dag(dag_id="cocalc_mapped_snippets", schedule=None, catchup=False, tags=["cocalc", "example"])
def cocalc_mapped_snippets() -> None:
    runs = CocalcExecuteOperator.partial(task_id="run_snippet", kernel="python3").expand(
        input=SNIPPETS
    )

    @task
    def aggregate(results: list[dict[str, Any]]) -> dict[str, Any]:
        # Index by len(): iterating Airflow's lazy XCom sequence probes one past the end and
        # logs a harmless "XCom not found" error.
        values = [int(results[i]["text"]) for i in range(len(results))]
        return {"values": values, "total": sum(values)}

    aggregate(runs.output)


dag = cocalc_mapped_snippets()
