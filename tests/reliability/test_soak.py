"""Many calls on a fresh server: kernel processes return to the pool size, memory stays flat.

``make test`` runs 100 calls; ``make soak`` runs COCALC_SOAK_CALLS=1000.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from cocalc_tasks import CocalcClient
from cocalc_tasks.server.local_server import LocalServer
from tests.conftest import SECRET_KEY
from tests.support.procs import kernel_processes

CALLS = int(os.environ.get("COCALC_SOAK_CALLS", "100"))
POOL = 2


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_soak(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with LocalServer(
        data_dir=tmp_path, api_keys=[SECRET_KEY], args=["--pool-size", str(POOL)]
    ) as server:
        assert server.process is not None
        pid = server.process.pid

        def call(i: int) -> bool:
            with CocalcClient(SECRET_KEY, server.url, timeout=(5, 60)) as c:
                return c.execute(f"print({i})", "python3", no_cache=True).stdout == f"{i}\n"

        with ThreadPoolExecutor(4) as pool:
            warm = list(pool.map(call, range(20)))
            before = rss_mb(pid)
            started = time.monotonic()
            rest = list(pool.map(call, range(20, CALLS)))
            took = time.monotonic() - started
        after = rss_mb(pid)
        assert all(warm) and all(rest)
        server.wait_for_pool("python3", POOL)
        deadline = time.monotonic() + 15
        while len(kernel_processes(tmp_path)) != POOL and time.monotonic() < deadline:
            time.sleep(0.2)
        kernels = len(kernel_processes(tmp_path))
        with capsys.disabled():
            print(
                f"\n[soak] {CALLS} calls in {took + 0.0:.1f} s after warm-up; kernel processes "
                f"{kernels} (pool {POOL}); server RSS {before:.1f} -> {after:.1f} MB"
            )
        assert kernels == POOL
        assert after - before < 25, f"server RSS grew from {before:.1f} to {after:.1f} MB"
