"""Run the example DAGs locally: a private, quiet AIRFLOW_HOME and a ``cocalc`` connection.

Call :func:`configure` before anything imports ``airflow`` (Airflow reads its config at import).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

DAGS_FOLDER = Path(__file__).resolve().parent


def configure(home: Path, host: str, api_key: str | None, log_level: str = "WARNING") -> None:
    """Point Airflow at ``home`` and define ``cocalc_default`` as an environment connection."""
    os.environ.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": log_level,
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
            "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
            "AIRFLOW_CONN_COCALC_DEFAULT": json.dumps(
                {"conn_type": "cocalc", "host": host, "password": api_key or ""}
            ),
        }
    )


def migrate() -> None:
    """Create the SQLite metadata DB that ``dag.test()`` needs."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
