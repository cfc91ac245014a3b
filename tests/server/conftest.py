"""One local server with real kernels for the whole module set; short limits keep tests quick."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cocalc_tasks import CocalcClient
from cocalc_tasks.server.local_server import LocalServer
from tests.conftest import SECRET_KEY

PROJECT_ID = "6e75dbf1-0342-4249-9dce-6b21648656e9"
OTHER_PROJECT = "11111111-2222-4333-8444-555555555555"
PROJECT_KEY = "sk-PROJECTKEYxyz987654321"
CELL_TIMEOUT = 3.0
SERVER_ARGS = [
    "--kernels",
    "python3,bash",
    "--pool-size",
    "2",
    "--cell-timeout",
    str(CELL_TIMEOUT),
    "--project-cell-timeout",
    str(CELL_TIMEOUT),
]


def start_server(data_dir: Path, *extra: str) -> LocalServer:
    return LocalServer(
        data_dir=data_dir,
        api_keys=[SECRET_KEY],
        project_keys={PROJECT_KEY: PROJECT_ID},
        args=[*SERVER_ARGS, *extra],
    ).start()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    srv = start_server(tmp_path_factory.mktemp("server"))
    srv.wait_for_pool("python3", 2)
    yield srv
    srv.stop()


@pytest.fixture
def client(server: LocalServer) -> Iterator[CocalcClient]:
    with CocalcClient(api_key=SECRET_KEY, host=server.url, timeout=(5, 60)) as c:
        yield c


@pytest.fixture
def anonymous(server: LocalServer) -> Iterator[CocalcClient]:
    with CocalcClient(host=server.url, timeout=(5, 60)) as c:
        yield c
