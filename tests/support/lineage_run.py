"""Run one DAG of a folder with ``dag.test()`` in a process of its own, for the lineage test:
Airflow's OpenLineage provider reads (and caches) its transport when first used, so the test
sets it in this process's environment.

``python -m tests.support.lineage_run FOLDER DAG_ID``; prints the run's state.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main() -> None:
    folder, dag_id = sys.argv[1:3]
    bundle = {
        "name": "lineage",
        "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
        "kwargs": {"path": folder},
    }
    os.environ["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"] = json.dumps([bundle])
    try:  # not tests.airflow.conftest's dagbag(): importing it makes an AIRFLOW_HOME of its own
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 3.0
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]
    bag = DagBag(dag_folder=str(Path(folder)), safe_mode=False)
    run = bag.get_dag(dag_id).test()
    print(f"dag run state: {run.state}", flush=True)


if __name__ == "__main__":
    main()
