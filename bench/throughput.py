"""Distinct calls per second with 1, 4 and 8 clients, forked and exec'd kernels."""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.common import (
    KEY,
    N_THROUGHPUT,
    QUICK,
)
from cocalc_tasks import CocalcClient
from cocalc_tasks.server.local_server import LocalServer


# -- 4. throughput ------------------------------------------------------------------------------
def throughput(server: LocalServer | Sequence[LocalServer], clients: int, n: int) -> float:
    """Distinct calls per second; with several servers (replicas), the clients take them in
    turn."""
    servers = [server] if isinstance(server, LocalServer) else list(server)
    for s in servers:
        s.wait_for_pool("python3", 2)

    def one(i: int) -> None:
        with CocalcClient(KEY, servers[i % clients % len(servers)].url) as c:
            result = c.execute(f"{i} * 2  # {uuid.uuid4().hex}", "python3")
            assert result.text == str(i * 2)

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(n)))
    return n / (time.perf_counter() - started)


async def _spawn_capacity(seconds: float, parallel: int) -> float:
    from jupyter_client.manager import AsyncKernelManager

    done = 0
    deadline = time.monotonic() + seconds
    with tempfile.TemporaryDirectory() as tmp:

        async def starter(number: int) -> None:
            nonlocal done
            while time.monotonic() < deadline:
                km = AsyncKernelManager(
                    kernel_name="python3", transport="ipc", ip=f"{tmp}/s{number}-{done}"
                )
                await km.start_kernel()
                kc = km.client()
                kc.start_channels()
                await kc.wait_for_ready(timeout=60)
                kc.stop_channels()
                await km.shutdown_kernel(now=True)
                done += 1

        started = time.monotonic()
        await asyncio.gather(*(starter(i) for i in range(parallel)))
        return done / (time.monotonic() - started)


def throughput_all(
    server: LocalServer, papermill_p50: float, papermill_cli_p50: float
) -> dict[str, Any]:
    rates = {f"{c}_clients_per_s": throughput(server, c, N_THROUGHPUT) for c in (1, 4, 8)}
    papermill_rate = 1 / papermill_p50
    spawn = asyncio.run(_spawn_capacity(8 if QUICK else 15, 4))
    # The same 4 clients against a server that execs every kernel: what forking buys.
    with LocalServer(
        api_keys=[KEY], args=["--pool-size", "2", "--kernels", "python3", "--no-fork-kernels"]
    ) as exec_server:
        exec_rate = throughput(exec_server, 4, N_THROUGHPUT)
    return {
        **rates,
        "4_clients_no_fork_per_s": exec_rate,
        "papermill_sequential_per_s": papermill_rate,
        "papermill_cli_sequential_per_s": 1 / papermill_cli_p50,
        "ratio_4_clients_vs_papermill_cli": rates["4_clients_per_s"] * papermill_cli_p50,
        "kernel_spawn_capacity_4_starters_per_s": spawn,
        "ratio_4_clients_vs_papermill": rates["4_clients_per_s"] / papermill_rate,
        "ratio_4_clients_vs_spawn_capacity": rates["4_clients_per_s"] / spawn,
    }
