"""The local server's job store: ownership, expiry, and jobs orphaned by a dead server."""

from __future__ import annotations

import time
from pathlib import Path

from cocalc_tasks.server.jobs import JobRecord, JobStore

PROJECT = "6e75dbf1-0342-4249-9dce-6b21648656e9"
OTHER = "11111111-2222-4333-8444-555555555555"


def record(job_id: str, status: str = "running") -> JobRecord:
    return JobRecord(job_id, PROJECT, "sleep 1", status, "out", "", 0, 1, 42, None, [])


def test_a_job_belongs_to_its_project(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite3")
    store.create(record("a"))
    found = store.get("a", PROJECT)
    assert found is not None and found.stdout == "out" and found.pid == 42
    assert store.get("a", OTHER) is None


def test_finished_jobs_expire_after_their_last_read_and_running_ones_never(
    tmp_path: Path,
) -> None:
    store = JobStore(tmp_path / "jobs.sqlite3", ttl_seconds=0.3)
    store.create(record("done"))
    store.update("done", status="completed", elapsed_s=0.5)
    store.create(record("running"))
    time.sleep(0.2)
    assert store.get("done", PROJECT) is not None  # a read keeps it alive...
    time.sleep(0.2)
    assert store.get("done", PROJECT) is not None
    time.sleep(0.4)
    assert store.get("done", PROJECT) is None  # ...until ttl passes without one
    assert store.purge_expired() == 1
    assert store.get("running", PROJECT) is not None


def test_orphaned_jobs_keep_their_output_and_say_why(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    JobStore(path).create(record("a"))
    reopened = JobStore(path)  # as the next server would
    assert [row["job_id"] for row in reopened.running()] == ["a"]
    reopened.mark_orphaned("a")
    found = reopened.get("a", PROJECT)
    assert found is not None and found.status == "error" and found.exit_code == 1
    assert found.stdout == "out" and "stopped while this job was running" in found.stderr
    assert found.elapsed_s is not None and found.elapsed_s > 0
    assert reopened.running() == []
