"""What every measure shares: the run's sizes, the timing helper and the CPU readings."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

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


def own_cpu(pid: int) -> float:
    """CPU seconds of the process itself (not its children)."""
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def tree_cpu(pids: list[int]) -> float:
    """CPU seconds used so far by these processes and everything below them: live processes'
    own time plus the time of the children each has reaped."""
    total = 0.0
    for pid in pids:
        try:
            root = psutil.Process(pid)
            for p in [root, *root.children(recursive=True)]:
                t = p.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
        except psutil.Error:
            continue
    return total


def cpu_share(pid: int, seconds: float, done: threading.Event | None = None) -> float:
    """The process's own CPU over ``seconds`` of wall time, as a share of one core; ``done``
    is set at the end (to stop the work being measured)."""
    before, started = own_cpu(pid), time.perf_counter()
    time.sleep(seconds)
    if done is not None:
        done.set()
    return (own_cpu(pid) - before) / (time.perf_counter() - started)
