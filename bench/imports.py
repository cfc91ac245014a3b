"""What importing the integrations costs."""

from __future__ import annotations

import statistics
import subprocess
import sys
from typing import Any

from bench.common import (
    ROOT,
)


# -- 5. import cost -----------------------------------------------------------------------------
def _median_of(python: str, code: str, runs: int = 5) -> float:
    values = []
    for _ in range(runs):
        done = subprocess.run(
            [python, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
        )
        values.append(float(done.stdout.strip().splitlines()[-1]))
    return statistics.median(values)


def import_costs() -> dict[str, Any]:
    timer = "import time; t = time.perf_counter(); {stmt}; print(time.perf_counter() - t)"
    out: dict[str, Any] = {
        "import_cocalc_tasks_ms": 1000
        * _median_of(sys.executable, timer.format(stmt="import cocalc_tasks")),
    }
    airflow_py = ROOT / ".venv-airflow/bin/python"
    if airflow_py.exists():
        incremental = (
            "import airflow.sdk, time; t = time.perf_counter(); "
            "import airflow_provider.operators.cocalc; print(time.perf_counter() - t)"
        )
        env_code = "import os; os.environ.setdefault('AIRFLOW_HOME', '/tmp/bench-airflow'); "
        out["airflow_sdk_ms"] = 1000 * _median_of(
            str(airflow_py), env_code + timer.format(stmt="import airflow.sdk")
        )
        out["airflow_operator_over_sdk_ms"] = 1000 * _median_of(
            str(airflow_py), env_code + incremental
        )
    prefect_py = ROOT / ".venv-prefect/bin/python"
    if prefect_py.exists():
        out["prefect_ms"] = 1000 * _median_of(str(prefect_py), timer.format(stmt="import prefect"))
        out["prefect_tasks_over_prefect_ms"] = 1000 * _median_of(
            str(prefect_py),
            "import prefect, time; t = time.perf_counter(); "
            "import prefect_tasks; print(time.perf_counter() - t)",
        )
    return out
