"""Where one computed python3 call's time and CPU go, before and after prepared kernels.

For each way of starting kernels (``prepared``: built once in the zygote and forked ready to
run, the default; ``jupyter_client``: ``--no-prepare-kernels``, forked from the zygote and
started by ipykernel and jupyter_client as before), side by side:

- sequential calls (one client), so the server's CPU per phase is that call's own: the
  server's phases (from its ``cocalc_tasks_execute_phase_*`` metrics), the HTTP and JSON
  around them, and the CPU of the kernel side (zygotes and the kernels they fork, started and
  stopped off the request path);
- distinct calls from 4 clients: calls per second, and all the CPU per call of every process
  involved (server, sandboxes, zygotes, kernels);
- the warm call (``2+3``) p50, with the pool full."""

from __future__ import annotations

import re
import statistics
import tempfile
import time
import uuid
from typing import Any

import requests

from bench.common import KEY, N_WARM, QUICK, own_cpu, tree_cpu
from bench.latency import PAUSE
from bench.throughput import throughput
from cocalc_tasks import CocalcClient
from cocalc_tasks.server.jupyter.phases import PHASES
from cocalc_tasks.server.local_server import LocalServer

N_CALLS = 60 if QUICK else 200
N_DISTINCT = 200 if QUICK else 600
_SAMPLE = re.compile(r"^(cocalc_tasks_[a-z_]+)\{([^}]*)\} ([0-9.e+-]+)$", re.M)


def _metrics(server: LocalServer) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = requests.get(server.url + "/metrics", auth=(KEY, ""), timeout=30).text
    values = {}
    for name, labels, value in _SAMPLE.findall(text):
        pairs = frozenset(tuple(p.split("=", 1)) for p in labels.split(",") if "=" in p)
        values[(name, frozenset((k, v.strip('"')) for k, v in pairs))] = float(value)
    return values


def _get(values: dict[Any, float], name: str, **labels: str) -> float:
    return values.get((name, frozenset(labels.items())), 0.0)


MODES = {"prepared": [], "jupyter_client": ["--no-prepare-kernels"]}


def phase_costs() -> dict[str, Any]:
    return {mode: _costs(extra) for mode, extra in MODES.items()}


def _costs(extra: list[str]) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory() as data,
        LocalServer(
            data_dir=data,
            api_keys=[KEY],
            args=["--pool-size", "2", "--kernels", "python3", *extra],
        ) as server,
        CocalcClient(KEY, server.url) as client,
    ):
        assert server.process is not None
        server.wait_for_pool("python3", 2)
        for i in range(10):
            client.execute(f"2+3  # warm {i}", "python3")
        server.wait_for_pool("python3", 2)
        time.sleep(1)
        before, cpu_before = (
            _metrics(server),
            (own_cpu(server.process.pid), tree_cpu([server.process.pid])),
        )
        started = time.perf_counter()
        for _ in range(N_CALLS):
            client.execute(f"2+3  # {uuid.uuid4().hex}", "python3")
        wall = time.perf_counter() - started
        server.wait_for_pool("python3", 2)  # the refills of the last calls are done
        time.sleep(0.5)
        after, cpu_after = (
            _metrics(server),
            (own_cpu(server.process.pid), tree_cpu([server.process.pid])),
        )
        warm = _warm_p50(server, client)
        everything = tree_cpu([server.process.pid])
        per_s = throughput(server, 4, N_DISTINCT)
        server.wait_for_pool("python3", 2)
        time.sleep(0.5)
        everything = tree_cpu([server.process.pid]) - everything
    n = _get(after, "cocalc_tasks_execute_phase_seconds_count", phase="execute", call="computed")
    n -= _get(before, "cocalc_tasks_execute_phase_seconds_count", phase="execute", call="computed")
    phases: dict[str, dict[str, float]] = {}
    for phase in PHASES:
        labels = {"phase": phase, "call": "computed"}
        w = _get(after, "cocalc_tasks_execute_phase_seconds_sum", **labels) - _get(
            before, "cocalc_tasks_execute_phase_seconds_sum", **labels
        )
        c = _get(after, "cocalc_tasks_execute_phase_cpu_seconds_total", **labels) - _get(
            before, "cocalc_tasks_execute_phase_cpu_seconds_total", **labels
        )
        phases[phase] = {"wall_ms": 1000 * w / n, "cpu_ms": 1000 * c / n}
    route = "/api/v2/jupyter/execute"
    request_sum = _get(after, "cocalc_tasks_request_duration_seconds_sum", route=route) - _get(
        before, "cocalc_tasks_request_duration_seconds_sum", route=route
    )
    in_phases = sum(p["wall_ms"] for p in phases.values())
    server_cpu = cpu_after[0] - cpu_before[0]
    kernel_cpu = (cpu_after[1] - cpu_after[0]) - (cpu_before[1] - cpu_before[0])
    starts = {
        how: (
            _get(after, "cocalc_tasks_kernel_start_seconds_sum", how=how)
            - _get(before, "cocalc_tasks_kernel_start_seconds_sum", how=how),
            _get(after, "cocalc_tasks_kernel_start_seconds_count", how=how)
            - _get(before, "cocalc_tasks_kernel_start_seconds_count", how=how),
        )
        for how in ("prepared", "forked", "exec")
    }
    seconds, count = max(starts.values(), key=lambda pair: pair[1])
    return {
        "calls": int(n),
        "kernel_start_ms": 1000 * seconds / count if count else None,
        "phases": phases,
        "routing_ms": 1000 * request_sum / n - in_phases,
        "client_wall_ms": 1000 * wall / n,
        "server_cpu_ms": 1000 * server_cpu / n,
        "server_cpu_outside_phases_ms": 1000 * server_cpu / n
        - sum(p["cpu_ms"] for p in phases.values()),
        "kernel_side_cpu_ms": 1000 * kernel_cpu / n,
        "warm_p50_ms": warm,
        "distinct_4_clients_per_s": per_s,
        "distinct_4_clients_cpu_ms_per_call": 1000 * everything / N_DISTINCT,
    }


def _warm_p50(server: LocalServer, client: CocalcClient) -> float:
    """``2+3`` on a fresh kernel, the pool full and the machine idle before each call."""
    times = []
    for i in range(N_WARM):
        server.wait_for_pool("python3", 2)
        time.sleep(PAUSE)
        started = time.perf_counter()
        client.execute(f"2+3  # warm {i} {uuid.uuid4().hex}", "python3")
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


if __name__ == "__main__":  # pragma: no cover - `python -m bench.phases`, this part alone
    import json

    print(json.dumps(phase_costs(), indent=2))
