"""``make bench``: every figure measured side by side in one run on this machine.

Writes bench/results.md (a table), bench/results.json and bench/results.png (a chart).
Not part of ``make test``: speed targets live here, not in timed unit tests.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
import requests

from cocalc_tasks import CocalcClient
from cocalc_tasks.server.process import LocalServer

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench"
KEY = "sk-bench-local-only"
QUICK = os.environ.get("BENCH_QUICK") == "1"
N_CLIENT = 100 if QUICK else 500
N_WARM = 30 if QUICK else 200
N_PAPERMILL = 5 if QUICK else 15
N_THROUGHPUT = 20 if QUICK else 60
N_SOAK = 100 if QUICK else 1000


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def ms(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": pct(values, 0.5) * 1000,
        "p95_ms": pct(values, 0.95) * 1000,
        "p99_ms": pct(values, 0.99) * 1000,
        "n": len(values),
    }


def timed(fn: Callable[[], Any], n: int) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        out.append(time.perf_counter() - started)
    return out


# -- 1. client overhead -------------------------------------------------------------------------
def client_overhead(server: LocalServer) -> dict[str, Any]:
    body = {"input": "2+3", "kernel": "python3"}
    url = server.url + "/api/v2/jupyter/execute"
    with CocalcClient(KEY, server.url) as client:
        client.execute("2+3", "python3")  # fill the cache: both sides then measure the same path
        session = requests.Session()
        session.auth = (KEY, "")
        for _ in range(20):
            session.post(url, json=body).json()
            client.execute("2+3", "python3")
        raw = timed(lambda: session.post(url, json=body).json(), N_CLIENT)
        ours = timed(lambda: client.execute("2+3", "python3"), N_CLIENT)
    return {
        "raw_requests": ms(raw),
        "cocalc_client": ms(ours),
        "ratio_p50": pct(ours, 0.5) / pct(raw, 0.5),
    }


# -- 2. warm-pool latency, against the raw kernel round trip and papermill ------------------------
#: Idle time before each server call (after its pool is full again), and before each paced raw
#: round trip: a vCPU that idled 50 ms wakes slower (a zmq ping-pong: ~0.12 ms back to back,
#: ~0.4 ms after 50 ms idle), so the like-for-like floor is paced the same way.
PAUSE = 0.05


async def _raw_round_trips(n: int, pause: float = 0.0) -> list[float]:
    from jupyter_client.manager import AsyncKernelManager

    with tempfile.TemporaryDirectory() as tmp:
        km = AsyncKernelManager(kernel_name="python3", transport="ipc", ip=f"{tmp}/k")
        await km.start_kernel()
        kc = km.client()
        kc.start_channels()
        await kc.wait_for_ready(timeout=60)
        out = []
        for i in range(n + 10):
            if pause:
                await asyncio.sleep(pause)
            started = time.perf_counter()
            msg_id = kc.execute(f"{i}+1")
            while True:
                msg = await kc.get_iopub_msg(timeout=10)
                if (
                    msg["parent_header"].get("msg_id") == msg_id
                    and msg["msg_type"] == "status"
                    and msg["content"]["execution_state"] == "idle"
                ):
                    break
            await kc.get_shell_msg(timeout=10)
            out.append(time.perf_counter() - started)
        kc.stop_channels()
        await km.shutdown_kernel(now=True)
        return out[10:]


def one_cell_notebook(folder: Path) -> Path:
    """The notebook papermill runs: one cell, ``2+3``, on python3."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("2+3")]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    source = folder / "in.ipynb"
    nbformat.write(nb, source)
    return source


def papermill_runs(n: int) -> list[float]:
    import papermill

    with tempfile.TemporaryDirectory() as tmp:
        source = one_cell_notebook(Path(tmp))
        return timed(
            lambda: papermill.execute_notebook(
                str(source), f"{tmp}/out.ipynb", progress_bar=False, kernel_name="python3"
            ),
            n,
        )


def papermill_cli_runs(n: int) -> list[float]:
    """The papermill command, as a scheduler's shell step would run it (interpreter start incl.)."""
    papermill_bin = Path(sys.executable).with_name("papermill")
    with tempfile.TemporaryDirectory() as tmp:
        source = one_cell_notebook(Path(tmp))
        command = [
            str(papermill_bin),
            "--no-progress-bar",
            "-k",
            "python3",
            str(source),
            f"{tmp}/out.ipynb",
        ]
        return timed(lambda: subprocess.run(command, check=True, capture_output=True), n)


def warm_latency(server: LocalServer) -> dict[str, Any]:
    ours = []
    with CocalcClient(KEY, server.url) as client:
        for i in range(N_WARM):
            server.wait_for_pool("python3", 2)
            time.sleep(PAUSE)
            started = time.perf_counter()
            client.execute(f"2+3  # {i}", "python3", no_cache=True)
            ours.append(time.perf_counter() - started)
    raw = asyncio.run(_raw_round_trips(N_WARM))
    raw_paced = asyncio.run(_raw_round_trips(N_WARM, PAUSE))
    paper = papermill_runs(N_PAPERMILL)
    paper_cli = papermill_cli_runs(max(3, N_PAPERMILL // 3))
    return {
        "server_call": ms(ours),
        "raw_jupyter_client": ms(raw),
        "raw_jupyter_client_paced": ms(raw_paced),
        "papermill": ms(paper),
        "papermill_cli": ms(paper_cli),
        "ratio_vs_raw_p50": pct(ours, 0.5) / pct(raw, 0.5),
        "ratio_vs_raw_paced_p50": pct(ours, 0.5) / pct(raw_paced, 0.5),
        "papermill_over_server_p50": pct(paper, 0.5) / pct(ours, 0.5),
    }


# -- 3. cache hits ------------------------------------------------------------------------------
def cache_hits(server: LocalServer) -> dict[str, Any]:
    with CocalcClient(KEY, server.url) as client:
        client.execute("sum(range(100))", "python3")
        for _ in range(20):
            client.execute("sum(range(100))", "python3")
        hits = timed(lambda: client.execute("sum(range(100))", "python3"), N_CLIENT)
    return ms(hits)


# -- 4. throughput ------------------------------------------------------------------------------
def throughput(server: LocalServer, clients: int, n: int) -> float:
    server.wait_for_pool("python3", 2)

    def one(i: int) -> None:
        with CocalcClient(KEY, server.url) as c:
            result = c.execute(f"{i} * 2  # {uuid.uuid4().hex}", "python3")
            assert result.text == str(i * 2)

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(n)))
    return n / (time.perf_counter() - started)


async def _pool_starts(fork: bool, n: int) -> list[float]:
    """Seconds from asking the server's pool for a kernel to its being ready (warm-up incl.)."""
    from cocalc_tasks.server.kernelspecs import KernelCatalog
    from cocalc_tasks.server.pool import KernelPools

    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "IPYTHONDIR": f"{tmp}/ipython", "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
        pools = KernelPools(
            KernelCatalog(), scratch_dir=Path(tmp), kernel_env=env, default_size=0, fork=fork
        )
        out = []
        try:
            for _ in range(n + 1):  # the first one also starts the zygote: not counted
                started = time.perf_counter()
                kernel = await pools._start("python3")
                out.append(time.perf_counter() - started)
                await kernel.dispose()
        finally:
            await pools.close()
        return out[1:]


def kernel_starts() -> dict[str, Any]:
    n = 5 if QUICK else 20
    return {
        "forked": ms(asyncio.run(_pool_starts(True, n))),
        "execd": ms(asyncio.run(_pool_starts(False, n))),
    }


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


# -- 5. import cost -----------------------------------------------------------------------------
def _median_of(python: str, code: str, runs: int = 5) -> float:
    values = []
    for _ in range(runs):
        done = subprocess.run(
            [python, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
        )
        values.append(float(done.stdout.strip().splitlines()[-1]))
    return statistics.median(values)


def import_costs() -> dict[str, Any]:
    timer = "import time; t = time.perf_counter(); {stmt}; print(time.perf_counter() - t)"
    out: dict[str, Any] = {
        "import_cocalc_tasks_ms": 1000
        * _median_of(sys.executable, timer.format(stmt="import cocalc_tasks")),
    }
    airflow_py = ROOT / ".venv-airflow/bin/python"
    if airflow_py.exists():
        incremental = (
            "import airflow.sdk, time; t = time.perf_counter(); "
            "import airflow_provider.operators.cocalc; print(time.perf_counter() - t)"
        )
        env_code = "import os; os.environ.setdefault('AIRFLOW_HOME', '/tmp/bench-airflow'); "
        out["airflow_sdk_ms"] = 1000 * _median_of(
            str(airflow_py), env_code + timer.format(stmt="import airflow.sdk")
        )
        out["airflow_operator_over_sdk_ms"] = 1000 * _median_of(
            str(airflow_py), env_code + incremental
        )
    prefect_py = ROOT / ".venv-prefect/bin/python"
    if prefect_py.exists():
        out["prefect_ms"] = 1000 * _median_of(str(prefect_py), timer.format(stmt="import prefect"))
        out["prefect_tasks_over_prefect_ms"] = 1000 * _median_of(
            str(prefect_py),
            "import prefect, time; t = time.perf_counter(); "
            "import prefect_tasks; print(time.perf_counter() - t)",
        )
    return out


# -- 6. RSS and kernel processes over many calls --------------------------------------------------
def soak(server: LocalServer) -> dict[str, Any]:
    assert server.process is not None
    proc = psutil.Process(server.process.pid)
    samples: list[tuple[int, float, int]] = []

    def zygotes() -> list[psutil.Process]:
        return [c for c in proc.children() if "zygote.py" in " ".join(c.cmdline())]

    def kernels() -> int:
        # Kernels are the server's descendants, minus its fork servers (zygote.py).
        return len(set(proc.children(recursive=True)) - set(zygotes()))

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


# -- report -------------------------------------------------------------------------------------
def machine() -> str:
    return (
        f"{platform.processor() or platform.machine()}, {psutil.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )


def write_markdown(r: dict[str, Any]) -> None:
    k = r["kernel_starts"]
    c, w, h, t, i, s = (
        r["client_overhead"],
        r["warm_latency"],
        r["cache_hits"],
        r["throughput"],
        r["imports"],
        r["soak"],
    )
    lines = [
        "# Benchmark results",
        "",
        f"Machine: {machine()}. Run: {r['date']}{' (quick mode)' if QUICK else ''}. "
        "Every comparison was measured side by side in this one run (`make bench`).",
        "",
        "| # | measure | result | target |",
        "|---|---|---|---|",
        f"| 1 | client overhead: `CocalcClient.execute` vs raw `requests.Session` POST, "
        f"{c['cocalc_client']['n']} cache-hit calls | p50 {c['cocalc_client']['p50_ms']:.2f} ms vs "
        f"{c['raw_requests']['p50_ms']:.2f} ms: **{c['ratio_p50']:.2f}x** | small |",
        f"| 2 | warm-pool call `2+3` (fresh kernel per call) | p50 {w['server_call']['p50_ms']:.1f} ms, "
        f"p95 {w['server_call']['p95_ms']:.1f} ms | |",
        f"| 2 | raw jupyter_client warm round trip, paced as the server calls ({PAUSE * 1000:.0f} ms "
        f"idle before each) | p50 {w['raw_jupyter_client_paced']['p50_ms']:.1f} ms, "
        f"p95 {w['raw_jupyter_client_paced']['p95_ms']:.1f} ms | |",
        f"| 2 | raw jupyter_client warm round trip, back to back | p50 "
        f"{w['raw_jupyter_client']['p50_ms']:.1f} ms, p95 {w['raw_jupyter_client']['p95_ms']:.1f}"
        " ms | |",
        f"| 2 | ratio server / raw, like for like (paced) | **{w['ratio_vs_raw_paced_p50']:.2f}x**"
        " | <= 2x |",
        f"| 2 | ratio server / raw back to back (stricter) | **{w['ratio_vs_raw_p50']:.2f}x** "
        "| <= 2x |",
        f"| 2 | papermill one-cell notebook | p50 {w['papermill']['p50_ms']:.0f} ms, "
        f"p95 {w['papermill']['p95_ms']:.0f} ms: {w['papermill_over_server_p50']:.0f}x slower "
        "than a server call | |",
        f"| 3 | cache hit | p50 **{h['p50_ms']:.2f} ms**, p95 {h['p95_ms']:.2f} ms | p50 <= 3 ms |",
        f"| 4 | throughput, distinct calls, 1 / 4 / 8 clients | {t['1_clients_per_s']:.2f} / "
        f"**{t['4_clients_per_s']:.2f}** / {t['8_clients_per_s']:.2f} calls/s | |",
        f"| 4 | papermill sequential, `execute_notebook` in one process | "
        f"{t['papermill_sequential_per_s']:.2f} notebooks/s | |",
        f"| 4 | ratio 4 clients / papermill in-process (the stricter baseline) | "
        f"**{t['ratio_4_clients_vs_papermill']:.2f}x** | >= 3x |",
        f"| 4 | papermill CLI, one notebook per command (p50 {w['papermill_cli']['p50_ms']:.0f} ms) "
        f"| {t['papermill_cli_sequential_per_s']:.2f} notebooks/s; ratio 4 clients / CLI "
        f"**{t['ratio_4_clients_vs_papermill_cli']:.2f}x** | |",
        f"| 4 | kernel-spawn capacity (jupyter_client exec starts), 4 parallel starters | "
        f"{t['kernel_spawn_capacity_4_starters_per_s']:.2f} kernels/s; 4 clients reach "
        f"**{t['ratio_4_clients_vs_spawn_capacity']:.0%}** of it | ~75% |",
        f"| 4 | kernel start to ready, one at a time (warm-up cells incl.), forked / exec'd | "
        f"p50 **{k['forked']['p50_ms']:.0f}** / {k['execd']['p50_ms']:.0f} ms | |",
        f"| 4 | 4 clients, server started with `--no-fork-kernels` (every kernel exec'd) | "
        f"{t['4_clients_no_fork_per_s']:.2f} calls/s: "
        f"{t['4_clients_no_fork_per_s'] / t['papermill_sequential_per_s']:.2f}x papermill | |",
        f"| 5 | `import cocalc_tasks` | {i['import_cocalc_tasks_ms']:.0f} ms | |",
    ]
    if "airflow_operator_over_sdk_ms" in i:
        lines.append(
            f"| 5 | Airflow operator module over `import airflow.sdk` "
            f"({i['airflow_sdk_ms']:.0f} ms) | **+{i['airflow_operator_over_sdk_ms']:.1f}"
            " ms** | <= 50 ms |"
        )
    if "prefect_tasks_over_prefect_ms" in i:
        lines.append(
            f"| 5 | `prefect_tasks` over `import prefect` ({i['prefect_ms']:.0f} ms) | "
            f"+{i['prefect_tasks_over_prefect_ms']:.1f} ms | |"
        )
    lines += [
        f"| 6 | server RSS over {s['calls']} calls (not counting kernels) | "
        f"{s['rss_first_mb']:.1f} MB after {s['samples'][0][0]} calls -> {s['rss_last_mb']:.1f} MB "
        f"after {s['calls']} | <= 100 MB, flat |",
        f"| 6 | kernel processes after {s['calls']} calls | {s['kernel_processes_after']} "
        f"(pool size {s['pool_size']}) | = pool size |",
        f"| 6 | fork server (zygote) RSS, shared copy-on-write with the kernels it forks | "
        f"{s['zygote_rss_mb']:.1f} MB | |",
        "",
        "![results](results.png)",
        "",
    ]
    (OUT / "results.md").write_text("\n".join(lines))


def write_chart(r: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    w = r["warm_latency"]
    names = [
        "raw kernel,\nback to back",
        "raw kernel,\npaced",
        "server call\n(warm pool)",
        "cache hit",
    ]
    values = [
        w["raw_jupyter_client"]["p50_ms"],
        w["raw_jupyter_client_paced"]["p50_ms"],
        w["server_call"]["p50_ms"],
        r["cache_hits"]["p50_ms"],
    ]
    axes[0].bar(names, values, color=["#bbb", "#999", "#4474c4", "#6a4"])
    axes[0].set_ylabel("p50 latency (ms)")
    axes[0].set_title("Latency")
    t = r["throughput"]
    names = [
        "papermill\nsequential",
        "1 client",
        "4 clients",
        "8 clients",
        "exec spawn\ncapacity",
    ]
    values = [
        t["papermill_sequential_per_s"],
        t["1_clients_per_s"],
        t["4_clients_per_s"],
        t["8_clients_per_s"],
        t["kernel_spawn_capacity_4_starters_per_s"],
    ]
    axes[1].bar(names, values, color=["#999", "#4474c4", "#4474c4", "#4474c4", "#ccc"])
    axes[1].set_ylabel("distinct calls per second")
    axes[1].set_title("Throughput")
    s = r["soak"]["samples"]
    axes[2].plot([x[0] for x in s], [x[1] for x in s], marker="o", label="server RSS (MB)")
    axes[2].set_xlabel("calls")
    axes[2].set_ylabel("MB")
    axes[2].set_ylim(0, max(120, max(x[1] for x in s) * 1.2))
    twin = axes[2].twinx()
    twin.plot(
        [x[0] for x in s], [x[2] for x in s], color="#c44", marker="x", label="kernel processes"
    )
    twin.set_ylim(0, 12)
    axes[2].set_title("Soak")
    axes[2].legend(loc="lower left")
    twin.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(OUT / "results.png", dpi=110)


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
            ("kernel_starts", kernel_starts),
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
