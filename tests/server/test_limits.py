"""CoCalc's kernel limits (ulimit -n 1000 -f 10485760 -t 30 -v 3000000) and the exec limits,
and how the server chooses its sandbox at start-up."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cocalc_tasks import CocalcClient, CocalcCommandError
from cocalc_tasks.server.local_server import LocalServer
from tests.conftest import SECRET_KEY
from tests.server.conftest import PROJECT_ID
from tests.support.procs import is_zygote, processes_mentioning

pytestmark = pytest.mark.server

RLIMITS = (
    "import resource as r\n"
    "print([r.getrlimit(x)[0] for x in "
    "(r.RLIMIT_NOFILE, r.RLIMIT_FSIZE, r.RLIMIT_CPU, r.RLIMIT_AS)])"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    srv = LocalServer(
        data_dir=tmp_path_factory.mktemp("limits"),
        api_keys=[SECRET_KEY],
        args=[
            "--kernels",
            "python3,bash",
            "--pool-size",
            "1",
            "--kernel-limits-for",
            "bash=nofile=500",
        ],
    ).start()
    srv.wait_for_pool("python3", 1)
    yield srv
    srv.stop()


@pytest.fixture
def client(server: LocalServer) -> Iterator[CocalcClient]:
    with server.client(project_id=PROJECT_ID, timeout=(5, 60)) as c:
        yield c


def test_kernels_get_cocalcs_limits_set_after_the_fork(
    client: CocalcClient, server: LocalServer
) -> None:
    values = client.execute(RLIMITS, "python3", no_cache=True).stdout
    assert values == f"{[1000, 10485760 * 1024, 30, 3000000 * 1024]}\n"
    # the zygote itself is not limited: only what it forks is
    zygotes = [p for p in processes_mentioning(str(server.data_dir)) if is_zygote(p)]
    assert zygotes
    limits = Path(f"/proc/{zygotes[0]}/limits").read_text()
    assert "Max open files            1000 " not in limits


def test_limits_per_kernelspec(client: CocalcClient) -> None:
    assert client.execute("ulimit -n; ulimit -t; ulimit -v", "bash", no_cache=True).stdout == (
        "500\n30\n3000000\n"
    )


def test_a_4_gb_allocation_is_a_memory_error_and_all_recovers(client: CocalcClient) -> None:
    result = client.execute("x = bytearray(4 * 2**30)", "python3", no_cache=True)
    assert result.error is not None and result.error.ename == "MemoryError"
    assert client.execute("print(6 * 7)", "python3", no_cache=True).stdout == "42\n"


def test_commands_get_their_own_limits(client: CocalcClient) -> None:
    assert client.exec("ulimit -n; ulimit -v; ulimit -f").stdout == "1000\n6000000\n10485760\n"
    with pytest.raises(CocalcCommandError) as info:
        client.exec("python3", ["-c", "bytearray(7 * 2**30)"])
    assert "MemoryError" in info.value.stderr


def _serve(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    env = {"PATH": "/nonexistent", "HOME": str(tmp_path)}  # no bwrap to be found
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cocalc_tasks",
            "serve",
            "--port",
            "0",
            "--data-dir",
            str(tmp_path / "data"),
            "--pool-size",
            "0",
            *args,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_sandbox_bwrap_where_it_cannot_run_is_a_start_up_error(tmp_path: Path) -> None:
    process = _serve(tmp_path, "--sandbox", "bwrap")
    out, err = process.communicate(timeout=60)
    assert process.returncode == 2 and "listening" not in out
    assert "--sandbox bwrap: bubblewrap cannot run here: bwrap is not installed" in err


def test_sandbox_auto_where_it_cannot_run_warns_once(tmp_path: Path) -> None:
    process = _serve(tmp_path)
    try:
        assert process.stdout is not None and process.stderr is not None
        assert "listening on http://" in process.stdout.readline()
        process.terminate()
        _, err = process.communicate(timeout=30)
    finally:
        process.kill()
    warnings = [line for line in err.splitlines() if "NOT isolated" in line]
    assert len(warnings) == 1 and "bwrap is not installed" in warnings[0]
