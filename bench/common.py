"""What every measure shares: the run's sizes and the one timing helper."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
