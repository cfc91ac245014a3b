"""SageMath, forked against exec'd: distinct calls per second with 4 clients, warm-call latency
beside python3's, the memory each kernel adds (PSS), and a Prefect flow mapping ``factor`` over
100 inputs. Two servers from the Sage environment, one with ``--no-fork-kernels``, measured
side by side in one run. ``python -m bench.sage`` runs it alone."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psutil

from bench.common import KEY, QUICK, ROOT, ms
from cocalc_tasks import CocalcClient
from cocalc_tasks.server.local_server import LocalServer

SAGE_PYTHON = ROOT / ".venv-sage/bin/python"
PREFECT_PYTHON = ROOT / ".venv-prefect/bin/python"
KERNEL = "sage-9.8"
ARGS = ["--kernels", f"{KERNEL},python3", "--kernel-alias", f"{KERNEL}=sagemath"]
N_CALLS = {"forked": 60 if QUICK else 240, "exec": 8 if QUICK else 24}
N_WARM = 15 if QUICK else 40
N_FLOW = 100
PAUSE = 0.05

#: Run by the Prefect environment: map ``execute_code`` over distinct Sage inputs.
FLOW = """
import json, sys, time
from cocalc_tasks.testing.prefect import offline_environment
import tempfile
offline_environment(tempfile.mkdtemp(prefix="bench-prefect-"))
from prefect import flow, unmapped
from prefect_tasks import CocalcCredentials, execute_code

url, key, kernel, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

@flow
def factor_many(inputs):
    creds = CocalcCredentials(api_key=key, host=url)
    futures = execute_code.map(unmapped(creds), [f"factor({m})" for m in inputs],
                               kernel=unmapped(kernel))
    return [f.result().text for f in futures]

inputs = [10**12 + 7 * i for i in range(n)]
factor_many([2, 3])  # the engine's first-run costs, outside the measure
started = time.perf_counter()
texts = factor_many(inputs)
wall = time.perf_counter() - started
assert len(texts) == n and all(texts), texts
print(json.dumps({"wall_s": wall}))
"""


def _distinct(server: LocalServer, n: int, clients: int = 4) -> dict[str, Any]:
    latencies: list[float] = []

    def one(i: int) -> None:
        with CocalcClient(KEY, server.url, timeout=(5, 180)) as client:
            started = time.perf_counter()
            result = client.execute(f"factor({10**19 + 7 * i})  # {uuid.uuid4().hex}", KERNEL)
            latencies.append(time.perf_counter() - started)
            assert result.ok and result.text, result

    with ThreadPoolExecutor(clients) as pool:
        started = time.perf_counter()
        list(pool.map(one, range(n)))
        elapsed = time.perf_counter() - started
    return {"calls_per_s": n / elapsed, **ms(latencies)}


def _warm(server: LocalServer, kernel: str, pool_kernel: str) -> dict[str, float]:
    """One call at a time, each on a warm kernel (the pool refilled before it)."""
    out = []
    with CocalcClient(KEY, server.url, timeout=(5, 180)) as client:
        for i in range(N_WARM):
            server.wait_for_pool(pool_kernel, 2, timeout=300)
            time.sleep(PAUSE)
            started = time.perf_counter()
            assert client.execute(f"2+3  # {i} {uuid.uuid4().hex}", kernel, no_cache=True).ok
            out.append(time.perf_counter() - started)
    return ms(out)


def _sage_kernels(server: LocalServer) -> list[psutil.Process]:
    """The warm Sage kernels of ``server``: exec'd ones, or the zygote's children (never the
    zygote, nor the bwrap processes around them)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        argv = process.info["cmdline"] or []
        line = " ".join(argv)
        if not argv or argv[0].endswith("bwrap") or str(server.data_dir) not in line:
            continue
        if "sage.repl.ipython_kernel" in line and "-f" in line:  # an exec'd kernel
            found.append(process)
        elif "zygote.py" in line and "sage.all" in line:
            parent = process.parent()
            above = parent.cmdline() if parent is not None else []
            if above and not above[0].endswith("bwrap") and "zygote.py" in " ".join(above):
                found.append(process)  # forked by the zygote: a kernel
    return found


def _pss_mib(processes: list[psutil.Process]) -> list[float]:
    sizes = []
    for process in processes:
        try:
            sizes.append(process.memory_full_info().pss / 2**20)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return sizes


def _flow(server: LocalServer) -> float | None:
    if not PREFECT_PYTHON.exists():
        return None
    done = subprocess.run(
        [str(PREFECT_PYTHON), "-c", FLOW, server.url, KEY, KERNEL, str(N_FLOW)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if done.returncode != 0:  # say why: the flow's own traceback, not only its exit status
        raise RuntimeError(f"the Prefect flow failed:\n{done.stderr[-4000:]}")
    wall: float = json.loads(done.stdout.strip().splitlines()[-1])["wall_s"]
    return wall


@contextlib.contextmanager
def _sage_server(extra: list[str], env: dict[str, str] | None = None) -> Iterator[LocalServer]:
    """A server run by the Sage environment's Python, its Sage pool full and settled."""
    with (
        tempfile.TemporaryDirectory() as data,
        LocalServer(
            python=str(SAGE_PYTHON),
            data_dir=data,
            api_keys=[KEY],
            args=[*ARGS, "--pool-size", "2", "--kernel-pool", "sagemath=2", *extra],
            env=env,
        ) as server,
    ):
        server.wait_for_pool("sagemath", 2, timeout=300)
        time.sleep(2)  # the pool's kernels settle
        yield server


def sage_costs() -> dict[str, Any]:
    if not SAGE_PYTHON.exists():
        return {"skipped": "no Sage environment (make sage-env)"}
    results: dict[str, Any] = {}
    for mode, extra in (("forked", []), ("exec", ["--no-fork-kernels"])):
        with _sage_server(extra) as server:
            server.wait_for_pool("python3", 2, timeout=300)
            pss = _pss_mib(_sage_kernels(server))
            results[f"{mode}_kernel_pss_mib"] = sum(pss) / len(pss) if pss else None
            results[f"{mode}_distinct_4_clients"] = _distinct(server, N_CALLS[mode])
            results[f"{mode}_sage_warm"] = _warm(server, KERNEL, "sagemath")
            results[f"{mode}_python3_warm"] = _warm(server, "python3", "python3")
            results[f"{mode}_flow_{N_FLOW}_wall_s"] = _flow(server)
    # A user who activated Sage's venv has its bin/ on PATH, where the `sage` script lives.
    on_path = {"PATH": f"{SAGE_PYTHON.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    with _sage_server([], on_path) as server:
        results["forked_bin_on_path_distinct_4_clients"] = _distinct(server, N_CALLS["forked"])
    forked, execd = results["forked_distinct_4_clients"], results["exec_distinct_4_clients"]
    results["distinct_speedup"] = forked["calls_per_s"] / execd["calls_per_s"]
    results["sage_vs_python3_warm_p50"] = (
        results["forked_sage_warm"]["p50_ms"] / results["forked_python3_warm"]["p50_ms"]
    )
    return results


if __name__ == "__main__":
    print(json.dumps(sage_costs(), indent=2))
    sys.exit(0)
