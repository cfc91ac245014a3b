"""Server RSS and kernel processes over many calls."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psutil

from bench.common import (
    KEY,
    N_SOAK,
)
from cocalc_tasks import CocalcClient
from cocalc_tasks.server.local_server import LocalServer


# -- 6. RSS and kernel processes over many calls --------------------------------------------------
def soak(server: LocalServer) -> dict[str, Any]:
    assert server.process is not None
    proc = psutil.Process(server.process.pid)
    samples: list[tuple[int, float, int]] = []

    def cmdline(p: psutil.Process) -> list[str]:
        try:
            return p.cmdline()
        except psutil.Error:
            return []

    def sandbox(p: psutil.Process) -> bool:  # bubblewrap and its init, around what runs in it
        line = cmdline(p)
        return bool(line) and line[0].endswith("bwrap")

    def zygotes() -> list[psutil.Process]:
        # A zygote: zygote.py, whose parent is not one (its kernels share its cmdline).
        found = []
        for p in proc.children(recursive=True):
            if "zygote.py" not in " ".join(cmdline(p)) or sandbox(p):
                continue
            parent = p.parent()
            if parent is None or sandbox(parent) or "zygote.py" not in " ".join(cmdline(parent)):
                found.append(p)
        return found

    def kernels() -> int:
        # Kernels are the server's descendants, minus zygotes and sandbox wrappers.
        tree = set(proc.children(recursive=True))
        return len({p for p in tree if not sandbox(p)} - set(zygotes()))

    def one(i: int) -> None:
        with CocalcClient(KEY, server.url) as c:
            assert c.execute(f"print({i})", "python3", no_cache=True).stdout == f"{i}\n"

    with ThreadPoolExecutor(4) as pool:
        for start in range(0, N_SOAK, max(1, N_SOAK // 10)):
            list(pool.map(one, range(start, min(N_SOAK, start + max(1, N_SOAK // 10)))))
            samples.append(
                (min(N_SOAK, start + N_SOAK // 10), proc.memory_info().rss / 2**20, kernels())
            )
    server.wait_for_pool("python3", 2)
    deadline = time.monotonic() + 15
    while kernels() != 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    return {
        "calls": N_SOAK,
        "samples": samples,
        "rss_first_mb": samples[0][1],
        "rss_last_mb": samples[-1][1],
        "kernel_processes_after": kernels(),
        "zygote_rss_mb": sum(z.memory_info().rss for z in zygotes()) / 2**20,
        "pool_size": 2,
    }
