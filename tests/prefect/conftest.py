"""Prefect tests: offline settings before Prefect is imported, one harness, one local server."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

from cocalc_tasks.server.local_server import LocalServer
from cocalc_tasks.testing.prefect import credentials as credentials_for
from cocalc_tasks.testing.prefect import offline_environment
from tests.conftest import SECRET_KEY

PREFECT_HOME = tempfile.mkdtemp(prefix="cocalc-prefect-home-")
offline_environment(PREFECT_HOME, log_level="INFO")  # the tests read the run logs

pytest.importorskip("prefect")


#: What the harness's fresh server held before any test ran (see test_block.py).
AT_STARTUP: dict[str, Any] = {}


@pytest.fixture(scope="session", autouse=True)
def prefect_harness() -> Iterator[None]:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        with get_client(sync_client=True) as client:
            try:
                AT_STARTUP["block_type"] = client.read_block_type_by_slug("cocalc-credentials")
            except ObjectNotFound:
                AT_STARTUP["block_type"] = None
        yield
    shutil.rmtree(PREFECT_HOME, ignore_errors=True)  # the private PREFECT_HOME goes with it


@pytest.fixture(scope="session")
def cocalc_server_options() -> dict[str, Any]:
    return {"api_key": SECRET_KEY, "kernels": ["python3"], "pool_size": 2}


@pytest.fixture(scope="session")
def local_server(cocalc_server: LocalServer) -> str:
    return cocalc_server.url


@pytest.fixture
def credentials(cocalc_server: LocalServer) -> object:
    return credentials_for(cocalc_server.url, cocalc_server.api_key)
