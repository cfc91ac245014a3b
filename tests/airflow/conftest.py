"""Airflow tests: a private AIRFLOW_HOME set before Airflow is imported, and a local server."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cocalc_tasks.server.local_server import LocalServer
from cocalc_tasks.testing.airflow import configure, connection_env, migrate
from tests.conftest import ROOT, SECRET_KEY

AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="cocalc-airflow-home-"))
DAGS = ROOT / "example_dags"
# Before any `import airflow`: Airflow reads its configuration at import time.
configure(AIRFLOW_HOME, "http://127.0.0.1:9", SECRET_KEY, dags_folder=DAGS, log_level="INFO")

pytest.importorskip("airflow.sdk")


def resumable() -> bool:
    """Airflow 3.3+ keeps a job's id across tries (``ResumableJobMixin``); below it the
    common-compat stand-in keeps nothing, so every try submits a new job (the Airflow guide)."""
    from airflow.providers.common.compat.sdk import ResumableJobMixin

    return not ResumableJobMixin.__module__.startswith("airflow.providers.common.compat")


def without_airflow_mask_requests(log: str) -> str:
    """A task log without Airflow 3.0's own supervisor lines that carry a secret *to be masked*
    (``MaskSecret(value=...)``, printed at debug level by its in-process supervisor)."""
    return "\n".join(line for line in log.splitlines() if "MaskSecret(" not in line)


def dagbag(folder: Path, **kwargs: Any) -> Any:
    """A DagBag of ``folder``, from where this Airflow keeps the class (moved in 3.1)."""
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 3.0
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]
    return DagBag(dag_folder=str(folder), **kwargs)


@pytest.fixture(scope="session", autouse=True)
def _remove_airflow_home() -> Iterator[None]:
    """The private AIRFLOW_HOME (database, logs) goes when the session ends."""
    yield
    shutil.rmtree(AIRFLOW_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    migrate()
    return AIRFLOW_HOME


@pytest.fixture(scope="session")
def cocalc_server_options() -> dict[str, Any]:
    return {"api_key": SECRET_KEY, "kernels": ["python3"], "pool_size": 2}


@pytest.fixture
def cocalc_conn(monkeypatch: pytest.MonkeyPatch, cocalc_server: LocalServer) -> str:
    for name, value in connection_env(cocalc_server.url, cocalc_server.api_key).items():
        monkeypatch.setenv(name, value)
    return cocalc_server.url
