"""Compute on a CoCalc kernel and hand the value to a downstream task through XCom.

Needs a ``cocalc`` connection named ``cocalc_default`` (e.g. ``AIRFLOW_CONN_COCALC_DEFAULT``).
"""

from __future__ import annotations

import json
from typing import Any

from airflow.sdk import dag, task

from airflow_provider.operators.cocalc import CocalcExecuteOperator

STATS_CODE = """
import json, statistics
samples = [1.5, 2.5, 3.0, 4.25, 5.0]
print(json.dumps({"mean": statistics.mean(samples), "stdev": statistics.stdev(samples)}))
"""


@dag(dag_id="cocalc_python_xcom", schedule=None, catchup=False, tags=["cocalc", "example"])
def cocalc_python_xcom() -> None:
    stats = CocalcExecuteOperator(task_id="compute_stats", kernel="python3", input=STATS_CODE)

    @task
    def check_stats(result: dict[str, Any]) -> dict[str, float]:
        values: dict[str, float] = json.loads(result["stdout"])
        assert abs(values["mean"] - 3.25) < 1e-9, values
        return values

    check_stats(stats.output)


dag = cocalc_python_xcom()
