"""The sandbox's cost: warm-call latency and 4-client throughput with ``--sandbox none`` and
``--sandbox bwrap``, in the global pool and inside one project, measured side by side."""

from __future__ import annotations

import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.common import KEY, N_THROUGHPUT, N_WARM, ms
from cocalc_tasks import CocalcClient
from cocalc_tasks.server.local_server import LocalServer

PROJECT = "6e75dbf1-0342-4249-9dce-6b21648656e9"
PAUSE = 0.05


def _latency(server: LocalServer, project: str | None) -> list[float]:
    out = []
    with CocalcClient(KEY, server.url) as client:
        client.execute("1", "python3", project_id=project, no_cache=True)  # the project's pool
        for i in range(N_WARM):
            time.sleep(0.2 if project else 0)  # let a project's pool of one refill
            if project is None:
                server.wait_for_pool("python3", 2)
            time.sleep(PAUSE)
            started = time.perf_counter()
            client.execute(f"2+3  # {i}", "python3", project_id=project, no_cache=True)
            out.append(time.perf_counter() - started)
    return out


def _throughput(server: LocalServer, project: str | None, clients: int = 4) -> float:
    def one(i: int) -> None:
        with CocalcClient(KEY, server.url) as client:
            assert client.execute(f"{i}*2", "python3", project_id=project, no_cache=True).ok

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(clients)))  # warm-up
        started = time.perf_counter()
        list(pool.map(one, range(N_THROUGHPUT)))
    return N_THROUGHPUT / (time.perf_counter() - started)


def sandbox_costs() -> dict[str, Any]:
    results: dict[str, Any] = {}
    for mode in ("none", "bwrap"):
        with (
            tempfile.TemporaryDirectory() as data,
            LocalServer(
                data_dir=data,
                api_keys=[KEY],
                args=["--pool-size", "2", "--kernels", "python3", "--sandbox", mode],
            ) as server,
        ):
            server.wait_for_pool("python3", 2)
            for where, project in (("global", None), ("project", PROJECT)):
                latency = _latency(server, project)
                results[f"{mode}_{where}_warm"] = ms(latency)
                results[f"{mode}_{where}_4_clients_per_s"] = _throughput(server, project)
    for where in ("global", "project"):
        on, off = (
            results[f"bwrap_{where}_4_clients_per_s"],
            results[f"none_{where}_4_clients_per_s"],
        )
        results[f"{where}_throughput_change"] = on / off - 1
        results[f"{where}_warm_p50_ratio"] = (
            results[f"bwrap_{where}_warm"]["p50_ms"] / results[f"none_{where}_warm"]["p50_ms"]
        )
    return results


if __name__ == "__main__":  # pragma: no cover - `python -m bench.sandbox`, this part alone
    import json

    print(json.dumps(sandbox_costs(), indent=2))
