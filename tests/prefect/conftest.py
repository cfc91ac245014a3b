"""Prefect tests: offline settings before Prefect is imported, one harness, one local server."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import pytest

from example_dags.run_prefect_demo import offline_prefect_environment
from tests.conftest import SECRET_KEY

PREFECT_HOME = tempfile.mkdtemp(prefix="cocalc-prefect-home-")
offline_prefect_environment(PREFECT_HOME)
os.environ["PREFECT_LOGGING_LEVEL"] = "INFO"  # the tests read the run logs
os.environ.pop("PREFECT_API_URL", None)

pytest.importorskip("prefect")


@pytest.fixture(scope="session", autouse=True)
def prefect_harness() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def local_server() -> Iterator[str]:
    from cocalc_tasks.server.process import LocalServer

    with LocalServer(api_keys=[SECRET_KEY], args=["--pool-size", "2"]) as server:
        yield server.url


@pytest.fixture
def credentials(local_server: str) -> object:
    from prefect_tasks import CocalcCredentials

    return CocalcCredentials(api_key=SECRET_KEY, host=local_server)
