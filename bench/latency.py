"""Client overhead and warm-pool latency, against the raw kernel round trip and papermill."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

from bench.common import (
    KEY,
    N_CLIENT,
    N_PAPERMILL,
    N_WARM,
    ms,
    pct,
    timed,
)
from cocalc_tasks import CocalcClient
from cocalc_tasks.server.local_server import LocalServer


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
