"""``dag.test()`` through the testing kit prints nothing of our dependencies' own business (the
``make demo`` step runs DAGs this way)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, SECRET_KEY

SCRIPT = """
import sys
from pathlib import Path
from cocalc_tasks.testing.airflow import configure, migrate
configure(
    Path(sys.argv[1]), sys.argv[2], sys.argv[3], dags_folder=Path(sys.argv[4]), log_level="INFO"
)
migrate()
from example_dags import cocalc_notebook_report, cocalc_python_xcom
run = cocalc_python_xcom.dag.test()
print("STATE", run.state)
conf = {"project_id": "6e75dbf1-0342-4249-9dce-6b21648656e9", "n": 10, "output": sys.argv[5]}
run = cocalc_notebook_report.dag.test(run_conf=conf)  # deferred: its arguments are stored
print("STATE", run.state)
"""


def test_dag_test_prints_no_dependency_warning(tmp_path: Path, cocalc_conn: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    done = subprocess.run(
        [
            *(sys.executable, "-c", SCRIPT),  # with Python's default warning filters, as users run
            *(str(tmp_path), cocalc_conn, SECRET_KEY, str(ROOT / "example_dags")),
            str(tmp_path / "report.ipynb"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    shown = done.stdout + done.stderr
    assert shown.count("STATE success") == 2, shown[-2000:]
    assert "starlette.testclient" not in shown and "py.warnings" not in shown
    assert "values will not be stored encrypted" not in shown
