"""Point Airflow at a local server: a private ``AIRFLOW_HOME`` and a ``cocalc`` connection.

Call :func:`configure` before anything imports ``airflow``: Airflow reads its configuration at
import time. This module itself imports no Airflow.
"""

from __future__ import annotations

import base64
import importlib
import json
import os
import secrets
import subprocess
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path

__all__ = ["configure", "connection_env", "migrate"]


def connection_env(
    host: str,
    api_key: str | None,
    conn_id: str = "cocalc_default",
    *,
    extra: Mapping[str, object] | None = None,
) -> dict[str, str]:
    """The ``AIRFLOW_CONN_<ID>`` variable that defines a ``cocalc`` connection to ``host``
    (for ``monkeypatch.setenv`` or ``os.environ.update``); ``extra``: e.g. ``project_id``."""
    connection: dict[str, object] = {"conn_type": "cocalc", "host": host, "password": api_key or ""}
    if extra:
        connection["extra"] = dict(extra)
    value = json.dumps(connection)
    return {f"AIRFLOW_CONN_{conn_id.upper()}": value}


#: Warnings Airflow's own code causes in its dependencies, on every run.
_DEPENDENCY_WARNINGS = (
    r"Using `httpx` with `starlette\.testclient` is deprecated",  # dag.test()'s API client
    r"GitWildMatchPattern \('gitwildmatch'\) is deprecated",  # pathspec, reading .airflowignore
)


def configure(
    home: Path,
    host: str,
    api_key: str | None,
    *,
    dags_folder: Path | None = None,
    log_level: str = "WARNING",
    extra: Mapping[str, str] | None = None,
) -> None:
    """Point Airflow at ``home`` and define ``cocalc_default`` for ``host``, in ``os.environ``.

    Also silences the warnings ``dag.test()`` prints on every run that no DAG author can act
    on, because Airflow's own code causes them in its dependencies: it talks to its API through
    Starlette's test client, whose use of httpx Starlette deprecates, and reads
    ``.airflowignore`` with a pathspec syntax pathspec deprecates."""
    os.environ.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": log_level,
            "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
            # A key of its own, so the deferrals' arguments are stored encrypted (and Airflow
            # does not warn that they are not).
            "AIRFLOW__CORE__FERNET_KEY": os.environ.get("AIRFLOW__CORE__FERNET_KEY")
            or base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
            **({"AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder)} if dags_folder else {}),
            **connection_env(host, api_key),
            **(extra or {}),
        }
    )
    # Airflow's configuration turns its own deprecation warnings on when imported: import it
    # now (the environment is set), so that these filters come before its.
    importlib.import_module("airflow.configuration")
    for message in _DEPENDENCY_WARNINGS:
        warnings.filterwarnings("ignore", message=message)


def migrate() -> None:
    """Create the SQLite metadata database that ``dag.test()`` needs."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], check=True, stdout=subprocess.DEVNULL
    )
