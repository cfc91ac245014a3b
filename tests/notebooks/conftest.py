"""One local server with real kernels for the notebook tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cocalc_tasks import CocalcClient
from cocalc_tasks.server.local_server import LocalServer
from tests.conftest import SECRET_KEY

PROJECT_ID = "6e75dbf1-0342-4249-9dce-6b21648656e9"


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    with LocalServer(
        data_dir=tmp_path_factory.mktemp("notebook-server"),
        api_keys=[SECRET_KEY],
        args=["--kernels", "python3", "--pool-size", "2", "--kernel-alias", "py-alias=python3"],
    ) as srv:
        yield srv


@pytest.fixture
def client(server: LocalServer) -> Iterator[CocalcClient]:
    with CocalcClient(
        api_key=SECRET_KEY, host=server.url, project_id=PROJECT_ID, timeout=(5, 120)
    ) as c:
        yield c
