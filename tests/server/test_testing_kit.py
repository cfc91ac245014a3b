"""cocalc_tasks.testing as a user meets it: the pytest plugin's fixtures and local_server()."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from cocalc_tasks import CocalcClient
from cocalc_tasks.testing import local_server
from tests.support.procs import kernel_processes

USER_TEST = """
def test_runs_on_a_real_kernel(cocalc_client):
    result = cocalc_client.execute("import os; print(os.getpid()); 6 * 7", "python3")
    assert result.text == "42" and int(result.stdout) > 1

def test_server_has_its_own_key(cocalc_server):
    assert cocalc_server.api_key.startswith("sk-test-")
    assert cocalc_server.url.startswith("http://127.0.0.1:")
"""


def test_plugin_fixtures_work_in_a_users_own_suite(tmp_path: Path) -> None:
    """A fresh pytest process, nothing imported or configured: the entry point provides the
    fixtures, which start a real server and stop it."""
    (tmp_path / "test_user.py").write_text(textwrap.dedent(USER_TEST))
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "2 passed" in run.stdout


def test_local_server_starts_with_own_data_and_stops_its_kernels() -> None:
    with local_server(kernels=["python3"], pool_size=1) as server:
        data_dir = server.data_dir
        assert data_dir.is_dir() and server.api_key
        server.wait_for_pool("python3", 1)
        assert kernel_processes(data_dir), "the pool's kernel is running"
        with server.client() as client:
            assert isinstance(client, CocalcClient)
            assert client.execute("2+3", "python3").text == "5"
    assert not data_dir.exists(), "temporary data is removed"
    assert kernel_processes(data_dir) == []
