"""Beyond one machine: PostgreSQL against SQLite, and two replicas against one.

- cache-hit latency with each store, measured in alternating blocks on two servers that run
  side by side (same kernels, same client);
- distinct calls per second with 4 clients: one replica, then two sharing the database
  (clients alternating between them); both on this machine's cores, so two replicas should
  match one, not double it;
- per-call costs (CPU of a replica's processes and of PostgreSQL per computed call), from
  which an N-machine deployment's throughput is estimated;
- a cancel sent through the replica that does not run the job, until it is killed.
"""

from __future__ import annotations

import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import psutil

from bench.common import KEY, N_CLIENT, N_THROUGHPUT, QUICK, ms, tree_cpu
from bench.throughput import throughput
from cocalc_tasks import CocalcClient
from cocalc_tasks.server.local_server import LocalServer
from tests.support.postgres import PostgresServer

PROJECT_ID = "6e75dbf1-0342-4249-9dce-6b21648656e9"
ARGS = ["--pool-size", "2", "--kernels", "python3"]


def _server(root: Path, name: str, database: str | None) -> LocalServer:
    env = {"COCALC_SERVER_DATABASE_URL": database} if database else {}
    return LocalServer(
        data_dir=root / name,
        api_keys=[KEY],
        args=[*ARGS, "--replica-name", name],
        env=env,
    )


def _hits(servers: dict[str, LocalServer], blocks: int, per_block: int) -> dict[str, Any]:
    times: dict[str, list[float]] = {name: [] for name in servers}
    clients = {name: CocalcClient(KEY, s.url) for name, s in servers.items()}
    try:
        for c in clients.values():
            for _ in range(20):  # computed once, then warm hits
                c.execute("sum(range(100))", "python3")
        for _ in range(blocks):
            for name, c in clients.items():
                for _ in range(per_block):
                    started = time.perf_counter()
                    assert c.execute("sum(range(100))", "python3").from_cache
                    times[name].append(time.perf_counter() - started)
    finally:
        for c in clients.values():
            c.close()
    return {name: ms(values) for name, values in times.items()}


def _cancel_latency(owner: LocalServer, other: LocalServer, n: int) -> dict[str, Any]:
    times = []
    with (
        CocalcClient(KEY, owner.url, project_id=PROJECT_ID) as a,
        CocalcClient(KEY, other.url, project_id=PROJECT_ID) as b,
    ):
        for _ in range(n):
            job = a.submit("echo begin; sleep 300", timeout=600)
            while "begin" not in b.job(job).stdout:
                time.sleep(0.05)
            started = time.perf_counter()
            assert b.cancel(job).status == "killed"
            times.append(time.perf_counter() - started)
    return ms(times)


def replica_costs() -> dict[str, Any]:
    with ExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        postgres = PostgresServer().start()
        stack.callback(postgres.stop)
        database = postgres.create_database()
        lite = stack.enter_context(_server(root, "sqlite", None))
        a = stack.enter_context(_server(root, "pg-a", database))
        for s in (lite, a):
            s.wait_for_pool("python3", 2)
        blocks = 5 if QUICK else 10
        hits = _hits({"sqlite": lite, "postgresql": a}, blocks, max(10, N_CLIENT // blocks))
        lite.stop()

        b = stack.enter_context(_server(root, "pg-b", database))
        n = N_THROUGHPUT * 2
        postmaster = [int(p.pid) for p in psutil.process_iter(["cmdline"]) if _is_pg(p, postgres)]
        one_rates, two_rates = [], []
        cpu = {"replica": 0.0, "postgres": 0.0}
        for _ in range(3):  # alternating rounds: both layouts meet the same machine state
            replica_before, pg_before = tree_cpu([_pid(a)]), tree_cpu(postmaster)
            one_rates.append(throughput([a], 4, n))
            cpu["replica"] += tree_cpu([_pid(a)]) - replica_before
            cpu["postgres"] += tree_cpu(postmaster) - pg_before
            two_rates.append(throughput([a, b], 4, n))
        one, two = sorted(one_rates)[1], sorted(two_rates)[1]
        one_cpu, pg_cpu = cpu["replica"] / 3, cpu["postgres"] / 3
        cancel = _cancel_latency(a, b, 5 if QUICK else 15)

    cores = psutil.cpu_count() or 1
    replica_cpu_per_call = one_cpu / n
    pg_cpu_per_call = pg_cpu / n
    return {
        "cache_hit": hits,
        "cache_hit_pg_over_sqlite_p50": hits["postgresql"]["p50_ms"] / hits["sqlite"]["p50_ms"],
        "distinct_4_clients_1_replica_per_s": one,
        "distinct_4_clients_2_replicas_per_s": two,
        "two_over_one": two / one,
        "rounds_1_replica_per_s": one_rates,
        "rounds_2_replicas_per_s": two_rates,
        "replica_cpu_ms_per_call": replica_cpu_per_call * 1000,
        "postgres_cpu_ms_per_call": pg_cpu_per_call * 1000,
        "cores": cores,
        # A machine of this size running replicas only (PostgreSQL elsewhere), and the calls a
        # PostgreSQL core carries: the ceiling of adding machines.
        "per_machine_estimate_per_s": cores / replica_cpu_per_call,
        "postgres_core_ceiling_per_s": 1 / pg_cpu_per_call if pg_cpu_per_call else None,
        "this_machine_estimate_per_s": cores / (replica_cpu_per_call + pg_cpu_per_call),
        "cancel_through_other_replica": cancel,
    }


def _pid(server: LocalServer) -> int:
    assert server.process is not None
    return server.process.pid


def _is_pg(process: psutil.Process, postgres: PostgresServer) -> bool:
    try:
        return str(postgres.data) in " ".join(process.cmdline())
    except psutil.Error:
        return False
