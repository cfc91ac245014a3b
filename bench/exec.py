"""The exec API: a blocking ``true`` against its floor, ``async_get`` polls, and the server's
CPU cost of watching 8 jobs."""

from __future__ import annotations

import subprocess
import threading
import time
from typing import Any

import requests

from bench.common import KEY, N_CLIENT, QUICK, cpu_share, ms, pct, timed
from cocalc_tasks import CocalcClient
from cocalc_tasks.server.local_server import LocalServer

PROJECT = "6e75dbf1-0342-4249-9dce-6b21648656e9"
WATCH_SECONDS = 10.0 if QUICK else 30.0


def exec_costs(server: LocalServer) -> dict[str, Any]:
    session = requests.Session()
    status_url = server.url + "/cocalc-tasks/status"
    with CocalcClient(KEY, server.url, project_id=PROJECT) as client:
        for _ in range(10):
            client.exec("true")
            subprocess.run(["true"], check=True)
            session.get(status_url).json()
        blocking = timed(lambda: client.exec("true"), N_CLIENT)
        spawn = timed(lambda: subprocess.run(["true"], check=True), N_CLIENT)
        round_trip = timed(lambda: session.get(status_url).json(), N_CLIENT)
        floor = pct(spawn, 0.5) + pct(round_trip, 0.5)

        job = client.submit("sleep 600", timeout=900)
        for _ in range(20):
            client.job(job)
        polls = timed(lambda: client.job(job), N_CLIENT)
        client.cancel(job)

        assert server.process is not None
        idle = cpu_share(server.process.pid, WATCH_SECONDS / 3)
        jobs = [client.submit(f"sleep {WATCH_SECONDS + 30}", timeout=900) for _ in range(8)]
        stop = threading.Event()

        def poll_once_a_second() -> None:
            with CocalcClient(KEY, server.url, project_id=PROJECT) as own:
                while not stop.is_set():
                    tick = time.perf_counter()
                    for each in jobs:
                        own.job(each)
                    stop.wait(max(0.0, 1.0 - (time.perf_counter() - tick)))

        poller = threading.Thread(target=poll_once_a_second)
        poller.start()
        watched = cpu_share(server.process.pid, WATCH_SECONDS, stop)
        poller.join()
        for each in jobs:
            client.cancel(each)
    return {
        "blocking_true": ms(blocking),
        "subprocess_true": ms(spawn),
        "loopback_round_trip": ms(round_trip),
        "blocking_ratio_vs_floor_p50": pct(blocking, 0.5) / floor,
        "async_get": ms(polls),
        "idle_server_cpu_pct": idle * 100,
        "eight_jobs_polled_cpu_pct": watched * 100,
        "watch_seconds": WATCH_SECONDS,
    }


if __name__ == "__main__":  # pragma: no cover - `python -m bench.exec`, this part alone
    import json
    import tempfile

    with (
        tempfile.TemporaryDirectory() as data,
        LocalServer(data_dir=data, api_keys=[KEY], args=["--pool-size", "1"]) as srv,
    ):
        print(json.dumps(exec_costs(srv), indent=2))
