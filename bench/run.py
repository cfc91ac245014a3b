"""``make bench``: every figure measured side by side in one run on this machine.

Writes bench/results.md (a table), bench/results.json and bench/results.png (a chart).
Not part of ``make test``: speed targets live here, not in timed unit tests.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from bench.cache import cache_hits
from bench.common import KEY, OUT
from bench.exec import exec_costs
from bench.imports import import_costs
from bench.kernels import kernel_starts
from bench.latency import client_overhead, warm_latency
from bench.notebooks import notebook_costs
from bench.pages import page_costs
from bench.phases import phase_costs
from bench.replicas import replica_costs
from bench.report import machine, write_chart, write_markdown
from bench.sage import sage_costs
from bench.sandbox import sandbox_costs
from bench.soak import soak
from bench.throughput import throughput_all
from cocalc_tasks.server.local_server import LocalServer


def main() -> int:
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
    }
    with (
        tempfile.TemporaryDirectory() as data,
        LocalServer(
            data_dir=data, api_keys=[KEY], args=["--pool-size", "2", "--kernels", "python3"]
        ) as server,
    ):
        server.wait_for_pool("python3", 2)
        steps: list[tuple[str, Callable[[], Any]]] = [
            ("client_overhead", lambda: client_overhead(server)),
            ("warm_latency", lambda: warm_latency(server)),
            ("cache_hits", lambda: cache_hits(server)),
            (
                "throughput",
                lambda: throughput_all(
                    server,
                    results["warm_latency"]["papermill"]["p50_ms"] / 1000,
                    results["warm_latency"]["papermill_cli"]["p50_ms"] / 1000,
                ),
            ),
            ("soak", lambda: soak(server)),
            ("exec", lambda: exec_costs(server)),
            ("notebooks", lambda: notebook_costs(server)),
            ("kernel_starts", kernel_starts),
            ("sandbox", sandbox_costs),
            ("sage", sage_costs),
            ("replicas", replica_costs),
            ("pages", page_costs),
            ("phases", phase_costs),
        ]
        for name, step in steps:
            started = time.perf_counter()
            results[name] = step()
            print(f"{name}: done in {time.perf_counter() - started:.0f} s", flush=True)
    results["imports"] = import_costs()
    (OUT / "results.json").write_text(json.dumps(results, indent=2))
    write_markdown(results)
    write_chart(results)
    print((OUT / "results.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
