"""Two server replicas, one PostgreSQL database, the repository's nginx config in front.

Real parts only: a PostgreSQL server started for the suite, two ``cocalc-tasks serve``
processes with real kernels, and nginx running ``deploy/nginx.conf`` with this test's ports.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import requests

from cocalc_tasks import CocalcClient
from cocalc_tasks.server.local_server import LocalServer
from tests.conftest import SECRET_KEY
from tests.support.nginx import Nginx
from tests.support.postgres import PostgresServer

PROJECT_ID = "6e75dbf1-0342-4249-9dce-6b21648656e9"
REPLICA_TIMEOUT = 2.0
CLIENTS = 8


@dataclass
class Cluster:
    a: LocalServer
    b: LocalServer
    proxy: Nginx
    database: str

    def client(self, server: LocalServer | Nginx, **options: object) -> CocalcClient:
        return CocalcClient(
            host=server.url,
            api_key=SECRET_KEY,
            project_id=PROJECT_ID,
            timeout=(5, 120),
            **options,  # type: ignore[arg-type]
        )

    def log_rows(self, where: str = "TRUE") -> list[tuple[str, int, str | None]]:
        with psycopg.connect(self.database) as conn:
            return [
                (r[0], r[1], r[2])
                for r in conn.execute(
                    f"SELECT replica, cached, hash FROM jupyter_api_log WHERE {where}"  # noqa: S608
                ).fetchall()
            ]


def replica(name: str, root: Path, database: str) -> LocalServer:
    return LocalServer(
        data_dir=root / name,
        api_keys=[SECRET_KEY],
        args=[
            "--kernels",
            "python3",
            "--pool-size",
            "2",
            "--replica-name",
            name,
            "--replica-timeout",
            str(REPLICA_TIMEOUT),
        ],
        # The URL (with its password) through the environment, out of `ps`.
        env={"COCALC_SERVER_DATABASE_URL": database},
        log_file=root / f"{name}.log",
    )


@pytest.fixture
def cluster(postgres: PostgresServer, tmp_path: Path) -> Iterator[Cluster]:
    database = postgres.create_database()
    a = replica("a", tmp_path, database).start()
    b = replica("b", tmp_path, database).start()
    proxy = Nginx(tmp_path / "nginx", [_port(a), _port(b)])
    try:
        proxy.start()
        a.wait_for_pool("python3", 2)
        b.wait_for_pool("python3", 2)
        yield Cluster(a, b, proxy, database)
    finally:
        proxy.stop()
        a.stop()
        b.stop()
    for name in ("a", "b"):  # the database URL's password is in no log
        assert postgres.password not in (tmp_path / f"{name}.log").read_text()


def _port(server: LocalServer) -> int:
    return int(server.url.rsplit(":", 1)[1])


def run_clients(
    cluster: Cluster, calls: int, *, until: threading.Event | None = None
) -> tuple[list[str], int]:
    """``CLIENTS`` threads through the proxy, each running distinct code and checking its
    exact output. Returns the failures and the number of calls made."""
    failures: list[str] = []
    made = [0] * CLIENTS

    def work(index: int) -> None:
        with cluster.client(cluster.proxy) as c:
            i = 0
            while (until is None and i < calls) or (until is not None and not until.is_set()):
                value = index * 100_000 + i + int(time.time() * 1000) % 1000 * 1000_000
                try:
                    result = c.execute(f"print({value} * 3)", "python3", project_id=None)
                    if result.stdout != f"{value * 3}\n":
                        failures.append(f"client {index}: {result.stdout!r} for {value}")
                except Exception as exc:
                    failures.append(f"client {index} call {i}: {type(exc).__name__}: {exc}")
                i += 1
                made[index] = i

    threads = [threading.Thread(target=work, args=(n,)) for n in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    return failures, sum(made)


def test_eight_clients_over_two_replicas_get_exact_outputs_and_share_the_cache(
    cluster: Cluster,
) -> None:
    failures, made = run_clients(cluster, calls=12)
    assert failures == [] and made == CLIENTS * 12
    deadline = time.monotonic() + 10  # each row is written just after its answer
    while len(served := cluster.log_rows("cached = 0")) < made and time.monotonic() < deadline:
        time.sleep(0.05)
    by_replica = {name: sum(1 for r in served if r[0] == name) for name in ("a", "b")}
    assert sum(by_replica.values()) == made
    assert min(by_replica.values()) >= made // 4, by_replica  # spread over both
    # A result computed on a is a hit on b, and the other way round.
    with cluster.client(cluster.a) as on_a, cluster.client(cluster.b) as on_b:
        computed = on_a.execute("import random; print(random.random())", "python3")
        hit = on_b.execute("import random; print(random.random())", "python3")
        assert not computed.from_cache and hit.from_cache and hit.stdout == computed.stdout
        back = on_b.execute("import uuid; print(uuid.uuid4())", "python3")
        assert on_a.execute("import uuid; print(uuid.uuid4())", "python3").stdout == back.stdout
    deadline = time.monotonic() + 10
    while not {("a", 1), ("b", 1)} <= {(r[0], r[1]) for r in cluster.log_rows()}:
        assert time.monotonic() < deadline, "no cache hit logged on each replica"
        time.sleep(0.05)


def test_a_job_started_on_one_replica_is_read_awaited_and_cancelled_through_the_other(
    cluster: Cluster,
) -> None:
    with cluster.client(cluster.a) as on_a, cluster.client(cluster.b) as on_b:
        job = on_a.submit("for i in 1 2 3 4 5; do echo step $i; sleep 0.5; done")
        seen: list[str] = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # b reads the output a appends, as it comes
            status = on_b.job(job)
            if status.stdout and (not seen or status.stdout != seen[-1]):
                seen.append(status.stdout)
            if status.done:
                break
            time.sleep(0.1)
        assert len(seen) >= 3 and all(b.startswith(a) for a, b in itertools.pairwise(seen))
        result = on_b.wait(job)  # awaited through b (async_await)
        assert result.ok and result.stdout == "".join(f"step {i}\n" for i in range(1, 6))

        long = on_a.submit("echo begin; sleep 300", timeout=600)
        while "begin" not in on_b.job(long).stdout:
            time.sleep(0.1)
        started = time.monotonic()
        cancelled = on_b.cancel(long)
        took = time.monotonic() - started
        assert cancelled.status == "killed", cancelled
        assert took < 1.0, f"the owner acted on the cancel after {took:.2f} s"
        assert on_a.job(long).status == "killed"
        assert cluster.a.status()["running_commands"] == 0


def test_a_replica_killed_mid_traffic_leaves_the_other_serving_and_its_jobs_marked(
    cluster: Cluster,
) -> None:
    with cluster.client(cluster.a) as on_a:
        orphan = on_a.submit("echo begin; sleep 300", timeout=600)
        while "begin" not in on_a.job(orphan).stdout:
            time.sleep(0.1)
    stop = threading.Event()
    outcome: dict[str, object] = {}

    def traffic() -> None:
        outcome["result"] = run_clients(cluster, calls=0, until=stop)

    runner = threading.Thread(target=traffic)
    runner.start()
    time.sleep(2.0)
    assert cluster.a.process is not None
    before = len(cluster.log_rows())
    os.kill(cluster.a.process.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    time.sleep(4.0)
    stop.set()
    runner.join(300)
    failures, made = outcome["result"]  # type: ignore[misc]
    assert failures == [], failures[:5]
    after = cluster.log_rows()
    assert len(after) > before and made > CLIENTS  # the calls went on, on b
    with cluster.client(cluster.b) as on_b:
        while True:
            status = on_b.job(orphan)
            if status.status != "running" or time.monotonic() - killed_at > 30:
                break
            time.sleep(0.2)
        noticed = time.monotonic() - killed_at
        assert status.status == "error" and status.exit_code == 1
        assert status.stdout == "begin\n"
        assert "replica 'a' stopped answering while this job was running" in status.stderr
        assert noticed < REPLICA_TIMEOUT + 5
        assert on_b.execute("print('still here')", "python3").stdout == "still here\n"


def test_one_job_key_on_two_replicas_starts_one_job(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    """The rewrite's keyed jobs across replicas: the same key sent to both at once starts one
    command (PostgreSQL's partial unique index), and both answer with its job id."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.server.test_flavors import V2_KEY

    database = postgres.create_database()
    servers = [
        LocalServer(
            data_dir=tmp_path / name,
            api_keys=[V2_KEY],
            args=[
                *("--flavor", "cocalc-ai", "--pool-size", "0", "--replica-name", name),
                *("--projects-root", str(tmp_path / "projects")),  # one home for both
            ],
            env={"COCALC_SERVER_DATABASE_URL": database},
        ).start()
        for name in ("a", "b")
    ]
    try:
        key = "two-replicas"

        def submit(n: int) -> str:
            server = servers[n % 2]
            with CocalcClient(V2_KEY, server.url, project_id=PROJECT_ID) as c:
                return c.submit("echo started >> keyed.log; sleep 3", job_key=key).job_id

        with ThreadPoolExecutor(6) as pool:
            ids = set(pool.map(submit, range(6)))
        assert len(ids) == 1
        with CocalcClient(V2_KEY, servers[1].url, project_id=PROJECT_ID) as c:
            assert c.wait(ids.pop()).ok
            assert c.exec("cat keyed.log").stdout.count("started") == 1
    finally:
        for server in servers:
            server.stop()


def test_a_job_page_shows_the_job_on_either_replica_and_through_the_proxy(
    cluster: Cluster,
) -> None:
    with cluster.client(cluster.proxy) as client, cluster.client(cluster.a) as on_a:
        job = on_a.submit("echo '<b>from a</b>'; sleep 300", timeout=600)
        # The link a client gets through the proxy is the job's page behind the proxy.
        client.job(job)
        url = client.page_url(job.project_id, job.job_id)
        assert url == f"{cluster.proxy.url}/projects/{PROJECT_ID}/jobs/{job.job_id}"
        deadline = time.monotonic() + 20
        while "from a" not in on_a.job(job).stdout and time.monotonic() < deadline:
            time.sleep(0.1)
        pages = {
            name: requests.get(
                f"{where.url}/projects/{PROJECT_ID}/jobs/{job.job_id}",
                auth=(SECRET_KEY, ""),
                timeout=30,
            )
            for name, where in (("a", cluster.a), ("b", cluster.b), ("proxy", cluster.proxy))
        }
        for name, page in pages.items():
            assert page.status_code == 200, name
            assert "&lt;b&gt;from a&lt;/b&gt;" in page.text, name
            assert "on replica a" in page.text, name
        # The Cancel form of b's page, posted to b: a, which runs the job, kills it.
        token = re.search(r'name="token" value="([0-9a-f]{64})"', pages["b"].text)
        assert token
        done = requests.post(
            f"{cluster.b.url}/projects/{PROJECT_ID}/jobs/{job.job_id}/cancel",
            data={"token": token.group(1)},
            auth=(SECRET_KEY, ""),
            allow_redirects=False,
            timeout=30,
        )
        assert done.status_code == 303
        assert on_a.job(job).status == "killed"
