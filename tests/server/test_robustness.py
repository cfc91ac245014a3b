"""Kernels dying, interrupts ignored, parallelism and its limit, clean shutdown."""

from __future__ import annotations

import itertools
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from cocalc_tasks import CocalcClient, CocalcKernelDiedError
from cocalc_tasks.server.process import LocalServer
from tests.conftest import SECRET_KEY
from tests.server.conftest import CELL_TIMEOUT, start_server
from tests.support.procs import kernel_processes

INTERVAL = "import time; a = time.time(); time.sleep(0.8); print(a, time.time())"


@pytest.mark.parametrize(
    ("code", "fragment"),
    [
        ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", "terminated by signal SIGKILL"),
        ("import os; os._exit(3)", "exited with code 3"),
    ],
)
def test_kernel_dying_mid_call(
    client: CocalcClient, server: LocalServer, code: str, fragment: str
) -> None:
    with pytest.raises(CocalcKernelDiedError, match=fragment):
        client.execute("print('before', flush=True)\n" + code, "python3", no_cache=True)
    server.wait_for_pool("python3", 2, timeout=30)
    assert client.execute("print('alive')", "python3", no_cache=True).stdout == "alive\n"


def test_loop_ignoring_sigint_is_killed(client: CocalcClient, server: LocalServer) -> None:
    code = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True: pass"
    started = time.monotonic()
    with pytest.raises(CocalcKernelDiedError, match="ignored interrupts"):
        client.execute(code, "python3", no_cache=True)
    assert time.monotonic() - started < CELL_TIMEOUT + 10
    server.wait_for_pool("python3", 2, timeout=30)


def _intervals(url: str, n: int) -> list[tuple[float, float]]:
    def one(i: int) -> tuple[float, float]:
        with CocalcClient(SECRET_KEY, url) as c:
            start, end = c.execute(f"{INTERVAL}  # {i}", "python3", no_cache=True).stdout.split()
            return float(start), float(end)

    with ThreadPoolExecutor(n) as pool:
        return sorted(pool.map(one, range(n)))


def _overlaps(intervals: list[tuple[float, float]]) -> bool:
    return any(b[0] < a[1] for a, b in itertools.pairwise(intervals))


def test_requests_run_in_parallel(server: LocalServer) -> None:
    assert _overlaps(_intervals(server.url, 3))


def test_concurrency_limit_serialises(tmp_path: Path) -> None:
    srv = start_server(
        tmp_path, "--max-concurrency", "1", "--pool-size", "1", "--kernels", "python3"
    )
    try:
        assert not _overlaps(_intervals(srv.url, 3))
    finally:
        srv.stop()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stop_leaves_no_kernel_behind(tmp_path: Path, sig: signal.Signals) -> None:
    srv = start_server(tmp_path, "--pool-size", "2", "--kernels", "python3,bash")
    srv.wait_for_pool("python3", 2)
    with CocalcClient(SECRET_KEY, srv.url) as c:
        c.execute("print(1)", "python3", no_cache=True)
    assert len(kernel_processes(tmp_path)) >= 2
    assert srv.process is not None
    srv.process.send_signal(sig)
    # uvicorn shuts down gracefully, then re-raises the signal: the conventional exit status
    assert srv.process.wait(timeout=20) in (0, -sig, 128 + sig)
    deadline = time.monotonic() + 5
    while kernel_processes(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert kernel_processes(tmp_path) == []
    srv.stop()


def test_kernel_count_returns_to_pool_size(tmp_path: Path) -> None:
    srv = start_server(tmp_path, "--pool-size", "2", "--kernels", "python3")
    try:
        with CocalcClient(SECRET_KEY, srv.url) as c:
            for i in range(40):
                assert c.execute(f"{i}", "python3", no_cache=True).text == str(i)
        srv.wait_for_pool("python3", 2)

        def settled() -> bool:
            return len(kernel_processes(tmp_path)) == 2 and srv.status()["live_kernels"] == 2

        deadline = time.monotonic() + 10
        while not settled() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(kernel_processes(tmp_path)) == 2
        assert srv.status()["live_kernels"] == 2
    finally:
        srv.stop()


def test_unknown_kernel_alias_target_fails_at_start(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="did not start"):
        LocalServer(data_dir=tmp_path, args=["--kernel-alias", "sage-10.4=nope"]).start()
