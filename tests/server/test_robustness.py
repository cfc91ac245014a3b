"""Parallelism and its limit, clean shutdown, kernel count (faults: tests/reliability)."""

from __future__ import annotations

import itertools
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from cocalc_tasks import CocalcClient
from cocalc_tasks.server.local_server import LocalServer
from tests.conftest import SECRET_KEY
from tests.server.conftest import start_server
from tests.support.procs import kernel_processes, processes_mentioning

INTERVAL = "import time; a = time.time(); time.sleep(0.8); print(a, time.time())"


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
    try:
        srv.wait_for_pool("python3", 2)
        srv.wait_for_pool("bash", 2)
        with CocalcClient(SECRET_KEY, srv.url) as c:
            c.execute("print(1)", "python3", no_cache=True)
        # the used kernel is being replaced: at least the other python3 and both bash are up
        assert len(kernel_processes(tmp_path)) >= 3
        assert srv.process is not None
        srv.process.send_signal(sig)
        # uvicorn shuts down gracefully, then re-raises the signal: the conventional status
        assert srv.process.wait(timeout=20) in (0, -sig, 128 + sig)
        deadline = time.monotonic() + 5
        while processes_mentioning(str(tmp_path)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert processes_mentioning(str(tmp_path)) == []  # no kernel, no zygote
    finally:
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
