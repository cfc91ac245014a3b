"""One server for the reliability suite, logging to a file that the final secrets scan reads."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from cocalc_tasks import CocalcClient
from cocalc_tasks.server.local_server import LocalServer
from tests.conftest import SECRET_KEY

PROJECT_ID = "6e75dbf1-0342-4249-9dce-6b21648656e9"
CELL_TIMEOUT = 3.0


def broken_kernelspecs(root: Path) -> Path:
    """A JUPYTER_PATH with kernels that fail: one exits at once, one never answers."""
    for name, code in {
        "broken": "import sys; sys.exit(7)",
        "mute": "import time; time.sleep(600)",
    }.items():
        spec = root / "kernels" / name
        spec.mkdir(parents=True, exist_ok=True)
        (spec / "kernel.json").write_text(
            json.dumps(
                {
                    "argv": [sys.executable, "-c", code, "{connection_file}"],
                    "display_name": f"Faulty ({name})",
                    "language": "python",
                }
            )
        )
    return root


@pytest.fixture(scope="session")
def reliability_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("reliability")


@pytest.fixture(scope="session")
def server(reliability_dir: Path) -> Iterator[LocalServer]:
    jupyter_path = broken_kernelspecs(reliability_dir / "jupyter")
    srv = LocalServer(
        data_dir=reliability_dir / "data",
        api_keys=[SECRET_KEY],
        args=[
            "--pool-size",
            "2",
            "--cell-timeout",
            str(CELL_TIMEOUT),
            "--project-cell-timeout",
            str(CELL_TIMEOUT),
            "--max-concurrency",
            "8",
        ],
        env={"JUPYTER_PATH": str(jupyter_path), "COCALC_SERVER_KERNEL_START_TIMEOUT": "5"},
        log_file=reliability_dir / "server.log",
    ).start()
    srv.wait_for_pool("python3", 2)
    yield srv
    srv.stop()
    # After every test that used it, whatever their order: the key is in no file it wrote.
    leaks = files_containing(reliability_dir, SECRET_KEY)
    if leaks:
        pytest.fail(f"the API key was written to {leaks}")


def files_containing(root: Path, secret: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


@pytest.fixture
def client(server: LocalServer) -> Iterator[CocalcClient]:
    with CocalcClient(SECRET_KEY, server.url, timeout=(5, 60)) as c:
        yield c


def assert_healthy(server: LocalServer) -> None:
    """The server answers, runs code correctly, and its pool refills."""
    assert server.process is not None and server.process.poll() is None
    body = requests.post(
        server.url + "/api/v2/jupyter/execute",
        timeout=60,
        json={"input": "print(6*7)", "kernel": "python3", "noCache": True},
    ).json()
    assert body.get("output") == [{"name": "stdout", "text": "42\n"}], body
    server.wait_for_pool("python3", 2, timeout=60)
