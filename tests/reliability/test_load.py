"""Load: 8 concurrent clients for a bounded time. No request fails, and every response's
output is exactly what its own input should print: nothing lost or mixed between requests."""

from __future__ import annotations

import statistics
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from cocalc_tasks import CocalcClient
from cocalc_tasks.server.local_server import LocalServer
from tests.conftest import SECRET_KEY
from tests.reliability.conftest import assert_healthy

CLIENTS = 8
SECONDS = 20.0
MAX_REQUESTS_PER_CLIENT = 60


def test_concurrent_clients_get_exactly_their_own_outputs(
    server: LocalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    deadline = time.monotonic() + SECONDS
    failures: list[str] = []
    latencies: list[float] = []
    lock = threading.Lock()

    def worker(number: int) -> int:
        done = 0
        with CocalcClient(SECRET_KEY, server.url, timeout=(5, 60), retries=0) as client:
            while time.monotonic() < deadline and done < MAX_REQUESTS_PER_CLIENT:
                token = uuid.uuid4().hex
                i = number * 1000 + done
                code = (
                    f"print({i} * {i}, '{token}')\n"
                    f"import sys; print('e{i}', file=sys.stderr)\n{i} + 1"
                )
                expected = [
                    {"name": "stdout", "text": f"{i * i} {token}\n"},
                    {"name": "stderr", "text": f"e{i}\n"},
                    {"data": {"text/plain": str(i + 1)}},
                ]
                started = time.perf_counter()
                try:
                    outputs = client.execute(code, "python3", no_cache=True).outputs
                except Exception as exc:
                    with lock:
                        failures.append(f"{i}: {type(exc).__name__}: {exc}")
                    continue
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed)
                    if outputs != expected:
                        failures.append(f"{i}: got {outputs!r}")
                done += 1
        return done

    with ThreadPoolExecutor(CLIENTS) as pool:
        counts = list(pool.map(worker, range(CLIENTS)))
    assert not failures, failures[:5]
    total = sum(counts)
    assert total >= CLIENTS * 5
    ordered = sorted(latencies)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    with capsys.disabled():
        print(
            f"\n[load] {CLIENTS} clients, {total} requests, 0 failed, "
            f"p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms"
        )
    assert_healthy(server)
