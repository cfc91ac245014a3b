"""One storage suite, run against both engines: SQLite (the default) and a real PostgreSQL.

Each test gets a fresh database. Two ``Storage`` objects on one database stand for two
replicas sharing it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cocalc_tasks.server.storage import (
    ApiCall,
    DatabaseError,
    JobRecord,
    Storage,
    open_storage,
    redact_url,
)
from cocalc_tasks.server.storage.jobs import ORPHANED
from cocalc_tasks.server.storage.schema import SCHEMA_VERSION, migrate
from tests.support.postgres import PostgresServer

PROJECT = "6e75dbf1-0342-4249-9dce-6b21648656e9"
OTHER = "11111111-2222-4333-8444-555555555555"
ACCOUNT = "0b7c8a55-5d6f-5c3b-9f2a-1d7e3c4b5a69"

Opener = Callable[..., Storage]


@pytest.fixture(params=["sqlite", "postgresql"])
def open_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens replicas of one fresh database (SQLite file or PostgreSQL database)."""
    url = None
    if request.param == "postgresql":
        server: PostgresServer = request.getfixturevalue("postgres")
        url = server.create_database()
    opened: list[Storage] = []

    def open_(replica: str = "a", **ttls: float) -> Storage:
        storage = open_storage(url, tmp_path, replica=replica, **ttls)
        opened.append(storage)
        return storage

    yield open_
    for storage in opened:
        storage.close()


def record(job_id: str, project: str = PROJECT, stdout: str = "out") -> JobRecord:
    return JobRecord(job_id, project, "sleep 1", "running", stdout, "", 0, 1, 42, None, [])


def call(**fields: object) -> ApiCall:
    base: dict[str, object] = {
        "route": "v2",
        "account_id": ACCOUNT,
        "anonymous_id": None,
        "project_id": None,
        "path": None,
        "kernel": "python3",
        "hash": "a" * 40,
        "tag": None,
        "cached": False,
        "total_time_s": 1.5,
    }
    base.update(fields)
    return ApiCall(**base)  # type: ignore[arg-type]


# -- schema ----------------------------------------------------------------------------------


#: One row per migration applied, each once.
APPLIED = [(version,) for version in range(1, SCHEMA_VERSION + 1)]


def test_the_schema_is_created_once_with_its_version(open_db: Opener) -> None:
    first = open_db()
    assert first.db.all("SELECT version FROM cocalc_tasks_schema ORDER BY version") == APPLIED
    assert migrate(first.db) == SCHEMA_VERSION  # already there: nothing applied
    open_db("b")  # a second replica starting later
    assert first.db.all("SELECT version FROM cocalc_tasks_schema ORDER BY version") == APPLIED


def test_replicas_starting_together_migrate_once(open_db: Opener) -> None:
    first = open_db()
    first.db.execute("DELETE FROM cocalc_tasks_schema")
    for table in ("jupyter_api_cache", "jupyter_api_log", "exec_jobs", "replicas"):
        first.db.execute(f"DROP TABLE {table}")
    errors: list[BaseException] = []

    def start() -> None:
        try:
            migrate(first.db)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert first.db.all("SELECT version FROM cocalc_tasks_schema ORDER BY version") == APPLIED


def test_a_newer_schema_is_refused_by_name(open_db: Opener) -> None:
    storage = open_db()
    storage.db.execute(
        "INSERT INTO cocalc_tasks_schema (version, applied) VALUES (?, ?)",
        (SCHEMA_VERSION + 1, time.time()),
    )
    with pytest.raises(DatabaseError, match=f"schema version {SCHEMA_VERSION + 1}, newer"):
        migrate(storage.db)


# -- result cache ----------------------------------------------------------------------------


def test_a_result_cached_by_one_replica_is_a_hit_on_the_other(open_db: Opener) -> None:
    a, b = open_db("a"), open_db("b")
    output = [{"name": "stdout", "text": "nul \x00 and é 😀\n"}, {"data": {"text/plain": "7"}}]
    row_id = a.cache.put("d" * 40, output, "2026-11-30T00:00:00.000Z", PROJECT)
    hit = b.cache.get("d" * 40)
    assert hit is not None
    assert (hit.id, hit.output, hit.project_id) == (row_id, output, PROJECT)
    assert hit.created == "2026-11-30T00:00:00.000Z"
    assert b.cache.get("e" * 40) is None


def test_no_cache_replaces_the_row_and_hits_push_the_expiry(open_db: Opener) -> None:
    storage = open_db(cache_ttl=0.6)
    first = storage.cache.put("d" * 40, [1], "t1")
    second = storage.cache.put("d" * 40, [2], "t2")
    assert second != first
    assert storage.db.all("SELECT COUNT(*) FROM jupyter_api_cache") == [(1,)]
    for _ in range(3):  # each hit, touched, is kept for another 0.6 s
        time.sleep(0.3)
        hit = storage.cache.get("d" * 40)
        assert hit is not None and hit.output == [2]
        storage.cache.touch(hit.id)
    time.sleep(0.7)
    assert storage.cache.get("d" * 40) is None
    assert storage.cache.purge_expired() == 1


# -- exec jobs -------------------------------------------------------------------------------


def test_a_job_belongs_to_its_project_and_is_read_by_any_replica(open_db: Opener) -> None:
    a, b = open_db("a"), open_db("b")
    a.jobs.create(record("j", stdout="line 1\n\x00 exact"))
    assert a.jobs.update("j", stdout="line 1\n\x00 exact\nline 2\n", stats=[{"cpu": 1}])
    found = b.jobs.get("j", PROJECT)
    assert found is not None
    assert (found.stdout, found.stats, found.replica) == (
        "line 1\n\x00 exact\nline 2\n",
        [{"cpu": 1}],
        "a",
    )
    assert b.jobs.get("j", OTHER) is None
    assert [r.job_id for r in b.jobs.running("a")] == ["j"]
    assert b.jobs.running("b") == []


def test_a_cancel_asked_through_one_replica_reaches_the_owner(open_db: Opener) -> None:
    a, b = open_db("a"), open_db("b")
    a.jobs.create(record("j1"))
    a.jobs.create(record("j2"))
    assert a.jobs.to_stop(["j1", "j2"]) == []
    assert not b.jobs.request_cancel("j1", OTHER)  # not that project's job
    assert b.jobs.request_cancel("j1", PROJECT)
    assert a.jobs.to_stop(["j1", "j2"]) == ["j1"]
    a.jobs.update("j1", status="killed", exit_code=1)
    assert not b.jobs.request_cancel("j1", PROJECT)  # finished: nothing to cancel


def test_finished_jobs_expire_after_their_last_read_and_running_ones_never(
    open_db: Opener,
) -> None:
    storage = open_db(job_ttl=0.3)
    storage.jobs.create(record("done"))
    storage.jobs.update("done", status="completed", elapsed_s=0.5)
    storage.jobs.create(record("running"))
    time.sleep(0.2)
    assert storage.jobs.get("done", PROJECT) is not None  # a read keeps it alive...
    time.sleep(0.2)
    assert storage.jobs.get("done", PROJECT) is not None
    time.sleep(0.4)
    assert storage.jobs.get("done", PROJECT) is None  # ...until ttl passes without one
    assert storage.jobs.purge_expired() == 1
    assert storage.jobs.get("running", PROJECT) is not None


def test_an_orphaned_job_keeps_its_output_says_why_and_the_verdict_stands(
    open_db: Opener,
) -> None:
    a, b = open_db("a"), open_db("b")
    a.jobs.create(record("j"))
    assert b.jobs.mark_orphaned("j", ORPHANED + " (replica 'a')")
    assert not b.jobs.mark_orphaned("j")  # once only
    found = b.jobs.get("j", PROJECT)
    assert found is not None and found.status == "error" and found.exit_code == 1
    assert found.stdout == "out" and found.stderr.endswith("(replica 'a')")
    assert found.elapsed_s is not None and found.elapsed_s > 0
    # The owner, if it was only slow, cannot overwrite the verdict, and learns to stop.
    assert not a.jobs.update("j", status="completed")
    assert a.jobs.to_stop(["j"]) == ["j"]
    assert a.jobs.running() == []


# -- replicas --------------------------------------------------------------------------------


def test_a_replica_without_heartbeat_is_silent_to_the_others(open_db: Opener) -> None:
    a, b = open_db("a"), open_db("b")
    a.replicas.beat()
    b.replicas.beat()
    assert a.replicas.silent(0.5) == {}
    time.sleep(0.7)
    b.replicas.beat()
    silent = b.replicas.silent(0.5)
    assert list(silent) == ["a"] and silent["a"] < time.time() - 0.5
    assert a.replicas.silent(0.5) == {}  # b beat: a hears it
    b.replicas.forget("a")
    assert b.replicas.silent(0.5) == {}


# -- API log ---------------------------------------------------------------------------------


def test_usage_counts_computed_global_pool_calls_by_caller(open_db: Opener) -> None:
    log = open_db().api_log
    log.record(call(total_time_s=2.0))
    log.record(call(total_time_s=3.0, cached=True))  # a cache hit costs nothing
    log.record(call(total_time_s=5.0, project_id=PROJECT))  # in a project: no quota
    log.record(call(total_time_s=7.0, path="sub"))  # CoCalc counts path IS NULL only
    log.record(call(total_time_s=11.0, account_id=None, anonymous_id="10.0.0.7"))
    log.record(call(total_time_s=13.0, account_id=None, anonymous_id="10.0.0.8"))
    assert log.usage(60, account_id=ACCOUNT) == pytest.approx(2.0)
    assert log.usage(60, anonymous_id="10.0.0.7") == pytest.approx(11.0)
    assert log.usage(60) == pytest.approx(26.0)
    time.sleep(0.4)
    log.record(call(total_time_s=17.0))
    assert log.usage(0.3, account_id=ACCOUNT) == pytest.approx(17.0)  # a rolling window


def test_log_rows_expire_and_free_text_is_stored_safely(open_db: Opener) -> None:
    storage = open_db(log_ttl=0.3)
    storage.api_log.record(call(tag="nul\x00tag", error="Error: boom"))
    rows = storage.db.all("SELECT tag, error, replica, cached FROM jupyter_api_log")
    assert rows == [("nul\ufffdtag", "Error: boom", "a", 0)]
    time.sleep(0.4)
    assert storage.purge_expired() == 1
    assert storage.db.all("SELECT COUNT(*) FROM jupyter_api_log") == [(0,)]


# -- connection ------------------------------------------------------------------------------


def test_urls_are_shown_without_their_password() -> None:
    assert redact_url("postgresql://u:s3cret@db:5432/x") == "postgresql://u:***@db:5432/x"
    assert redact_url("postgresql://db/x?password=s3cret&sslmode=require") == (
        "postgresql://db/x?password=***&sslmode=require"
    )
    assert redact_url("postgresql://db/x") == "postgresql://db/x"


def test_an_unreachable_database_is_a_typed_error_without_the_password(
    tmp_path: Path,
) -> None:
    with socket_closed_port() as port:
        url = f"postgresql://u:s3cretpw@127.0.0.1:{port}/x?connect_timeout=2"
        with pytest.raises(DatabaseError) as info:
            open_storage(url, tmp_path, replica="a")
    assert f"127.0.0.1:{port}" in str(info.value) and "s3cretpw" not in str(info.value)
    with pytest.raises(DatabaseError, match="unsupported database URL scheme 'mysql'"):
        open_storage("mysql://u:pw@h/x", tmp_path, replica="a")


def test_a_wrong_password_is_named_as_such(postgres: PostgresServer, tmp_path: Path) -> None:
    url = postgres.url().replace(postgres.password, "wrong-password-xyz")
    with pytest.raises(DatabaseError, match="password authentication failed") as info:
        open_storage(url, tmp_path, replica="a")
    assert "wrong-password-xyz" not in str(info.value)


class socket_closed_port:
    """A loopback port nothing listens on."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        return None
