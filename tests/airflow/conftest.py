"""Airflow tests: a private AIRFLOW_HOME set before Airflow is imported, and a local server."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from example_dags.airflow_local import configure, migrate
from tests.conftest import SECRET_KEY

AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="cocalc-airflow-home-"))
# Before any `import airflow`: Airflow reads its configuration at import time.
configure(AIRFLOW_HOME, "http://127.0.0.1:9", SECRET_KEY, log_level="INFO")

pytest.importorskip("airflow.sdk")


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    migrate()
    return AIRFLOW_HOME


@pytest.fixture(scope="session")
def local_server() -> Iterator[str]:
    from cocalc_tasks.server.process import LocalServer

    with LocalServer(api_keys=[SECRET_KEY], args=["--pool-size", "2"]) as server:
        yield server.url


@pytest.fixture
def cocalc_conn(monkeypatch: pytest.MonkeyPatch, local_server: str) -> str:
    configure(AIRFLOW_HOME, local_server, SECRET_KEY, log_level="INFO")
    return local_server
