"""Async jobs across time: longer than any cell limit, and across server restarts."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from cocalc_tasks import CocalcClient
from cocalc_tasks.server.local_server import LocalServer
from tests.conftest import SECRET_KEY
from tests.server.conftest import PROJECT_ID
from tests.support.procs import all_gone

pytestmark = pytest.mark.server

#: No warm kernels: these servers run shell jobs only, and one is killed with SIGKILL.
JOBS_ONLY = ["--pool-size", "0", "--kernels", "bash", "--hub-timeout", "20"]


def jobs_server(data_dir: Path) -> LocalServer:
    """Not started yet: use it in a ``with`` block, or call ``start()``."""
    return LocalServer(data_dir=data_dir, api_keys=[SECRET_KEY], args=JOBS_ONLY)


def client(server: LocalServer) -> CocalcClient:
    return server.client(project_id=PROJECT_ID, timeout=(5, 60))


def wait_for_output(c: CocalcClient, job_id: str, text: str, within: float = 10) -> None:
    deadline = time.monotonic() + within
    while text not in c.job(job_id).stdout:
        assert time.monotonic() < deadline, f"{text!r} never appeared"
        time.sleep(0.05)


def test_a_90_second_job_streams_everything_in_order(tmp_path: Path) -> None:
    """Longer than any Jupyter cell (15-30 s) and than the hub's long-poll limit (20 s here)."""
    with jobs_server(tmp_path / "data") as server, client(server) as c:
        job = c.submit(
            "for i in $(seq 1 90); do echo line $i; echo err $i >&2; sleep 1; done", timeout=150
        )
        chunks: list[tuple[str, str]] = []
        started = time.monotonic()
        result = c.wait(job, on_output=lambda s, t: chunks.append((s, t)), poll_interval=2)
        took = time.monotonic() - started
    assert result.ok and 89 < took < 120 and result.elapsed and result.elapsed > 89
    assert result.stdout == "".join(f"line {i}\n" for i in range(1, 91))
    assert result.stderr == "".join(f"err {i}\n" for i in range(1, 91))
    assert "".join(t for s, t in chunks if s == "stdout") == result.stdout
    assert "".join(t for s, t in chunks if s == "stderr") == result.stderr
    assert len(chunks) > 20  # it really streamed, poll after poll


def test_jobs_survive_a_graceful_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with jobs_server(data) as server, client(server) as c:
        finished = c.submit("echo finished")
        assert c.wait(finished).ok
        marker = f"{300 + time.time() % 1000:.6f}"
        running = c.submit(f"echo begin; sleep {marker}", timeout=600)
        wait_for_output(c, running.job_id, "begin")
    assert all_gone(f"sleep {marker}")
    with jobs_server(data) as server, client(server) as c:
        assert c.job(finished).stdout == "finished\n"
        status = c.job(running)
    assert status.status == "error" and status.exit_code == 1
    assert status.stdout == "begin\n"
    assert "server was stopped while this job was running" in status.stderr


@pytest.mark.parametrize("sandbox", ["none", "bwrap"])
def test_a_job_whose_server_died_is_reported_and_its_processes_killed(
    tmp_path: Path, sandbox: str
) -> None:
    """Without a sandbox the job outlives its server until the next one settles it; inside
    one (bwrap --die-with-parent) it dies with the server."""
    data = tmp_path / "data"
    args = [*JOBS_ONLY, "--sandbox", sandbox]
    server = LocalServer(data_dir=data, api_keys=[SECRET_KEY], args=args).start()
    try:
        with client(server) as c:
            marker = f"{300 + time.time() % 1000:.6f}"
            job = c.submit(f"echo begin; sleep {marker} & wait", timeout=600)
            wait_for_output(c, job.job_id, "begin")
            time.sleep(0.5)  # let the output reach the store
        assert server.process is not None
        server.process.kill()  # no clean-up at all
        server.process.wait(10)
    finally:
        server.stop()
    if sandbox == "none":
        assert not all_gone(f"sleep {marker}", within=0)  # the dead server's job outlived it
    else:
        assert all_gone(f"sleep {marker}")
    with (
        LocalServer(data_dir=data, api_keys=[SECRET_KEY], args=args) as server,
        client(server) as c,
    ):
        status = c.job(job)
    assert status.status == "error" and status.stdout.startswith("begin\n")
    assert "server stopped while this job was running" in status.stderr
    assert all_gone(f"sleep {marker}")  # ... until the next server settled it


def test_a_second_server_cannot_take_a_data_directory_in_use(tmp_path: Path) -> None:
    """It would take the first one's running jobs for orphans and kill them."""
    data = tmp_path / "data"
    log = tmp_path / "second.log"
    with jobs_server(data) as first, client(first) as c:
        job = c.submit("sleep 30", timeout=60)
        second = LocalServer(data_dir=data, api_keys=[SECRET_KEY], args=JOBS_ONLY, log_file=log)
        with pytest.raises(RuntimeError, match="exit code 2"):
            second.start()
        second.stop()
        assert "is in use by another server" in log.read_text()
        assert c.job(job).status == "running"
        c.cancel(job)


def test_a_relative_data_dir_works_for_kernels_and_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kernels' IPC files and working directories used to stay relative and fail to spawn."""
    monkeypatch.chdir(tmp_path)  # the server inherits this working directory
    server = LocalServer(data_dir="rel-data", api_keys=[SECRET_KEY], args=["--pool-size", "1"])
    with server, client(server) as c:
        assert c.execute("print(6 * 7)", "python3").stdout == "42\n"
        assert c.execute("echo $((6 * 7))", "bash").stdout == "42\n"
        assert c.exec("pwd").stdout.strip() == str(tmp_path / "rel-data/projects" / PROJECT_ID)
    assert (tmp_path / "rel-data" / "state.sqlite3").exists()
