"""Where one computed python3 call's time and CPU go: the server's phases (from its
``cocalc_tasks_execute_phase_*`` metrics), the HTTP and JSON around them, and the CPU of the
kernel side (zygotes and the kernels they fork, started and stopped off the request path).

Calls are sequential (one client), so the server's CPU per phase is that call's own."""

from __future__ import annotations

import re
import tempfile
import time
import uuid
from typing import Any

import requests

from bench.common import KEY, QUICK, own_cpu, tree_cpu
from cocalc_tasks import CocalcClient
from cocalc_tasks.server.jupyter.phases import PHASES
from cocalc_tasks.server.local_server import LocalServer

N_CALLS = 60 if QUICK else 200
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


def phase_costs() -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory() as data,
        LocalServer(
            data_dir=data, api_keys=[KEY], args=["--pool-size", "2", "--kernels", "python3"]
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
    return {
        "calls": int(n),
        "phases": phases,
        "routing_ms": 1000 * request_sum / n - in_phases,
        "client_wall_ms": 1000 * wall / n,
        "server_cpu_ms": 1000 * server_cpu / n,
        "server_cpu_outside_phases_ms": 1000 * server_cpu / n
        - sum(p["cpu_ms"] for p in phases.values()),
        "kernel_side_cpu_ms": 1000 * kernel_cpu / n,
    }


if __name__ == "__main__":  # pragma: no cover - `python -m bench.phases`, this part alone
    import json

    print(json.dumps(phase_costs(), indent=2))
