"""A worker process for the crash test: runs one example DAG with ``dag.test()``.

``python -m tests.support.airflow_worker MODULE LOGICAL_DATE CONF_JSON``: the environment
(AIRFLOW_HOME, the connection) comes from the parent test, which kills this process mid-job.
"""

from __future__ import annotations

import importlib
import json
import sys
from datetime import datetime


def main() -> None:
    module, logical_date, conf = sys.argv[1:4]
    dag = importlib.import_module(f"example_dags.{module}").dag
    when = datetime.fromisoformat(logical_date)  # also run_after: the same run id both times
    run = dag.test(run_after=when, logical_date=when, run_conf=json.loads(conf))
    print(f"dag run state: {run.state}", flush=True)


if __name__ == "__main__":
    main()
