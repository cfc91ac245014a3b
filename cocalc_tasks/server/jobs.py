"""Async exec jobs in SQLite under the data directory, so they outlive the server process.

CoCalc keeps jobs in the project process's memory (an LRU of 100, one hour after the last
read) and loses them all on a restart. Here a row is written at submit, its output is
rewritten as it arrives (at most every ``flush_interval`` seconds, and at the end), and it is
finished once. A job found ``running`` when a server starts belonged to a server that died:
it is marked ``error`` with a message that says so, never left running. Finished jobs expire
``ttl`` seconds after they were last read; running jobs never do.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cocalc_tasks.server.cache import open_database

__all__ = ["JobRecord", "JobStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS exec_jobs (
    job_id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    command TEXT NOT NULL,
    status TEXT NOT NULL,
    stdout TEXT NOT NULL DEFAULT '',
    stderr TEXT NOT NULL DEFAULT '',
    exit_code INTEGER NOT NULL DEFAULT 0,
    start INTEGER NOT NULL,
    pid INTEGER,
    elapsed_s REAL,
    stats TEXT NOT NULL DEFAULT '[]',
    accessed REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS exec_jobs_accessed ON exec_jobs (status, accessed);
"""

_UPDATABLE = frozenset({"status", "stdout", "stderr", "exit_code", "elapsed_s", "stats"})
ORPHANED = (
    "the cocalc-tasks server stopped while this job was running; its process group was "
    "killed and its output up to that moment is kept"
)


@dataclass
class JobRecord:
    """One row: CoCalc's async record fields plus the owning project."""

    job_id: str
    project_id: str
    command: str
    status: str
    stdout: str
    stderr: str
    exit_code: int
    start: int
    pid: int | None
    elapsed_s: float | None
    stats: list[dict[str, Any]]

    def body(self, *, with_stats: bool) -> dict[str, Any]:
        """CoCalc master's async record, in its key order; ``elapsed_s`` once finished."""
        body: dict[str, Any] = {
            "stdout": self.stdout,
            "stderr": self.stderr,
            "exit_code": self.exit_code,
            "type": "async",
            "job_id": self.job_id,
            "start": self.start,
            "status": self.status,
        }
        if self.status != "running" and self.elapsed_s is not None:
            body["elapsed_s"] = self.elapsed_s
        if self.pid is not None:
            body["pid"] = self.pid
        if with_stats and self.stats:
            body["stats"] = self.stats
        return body


class JobStore:
    """Small synchronous store; each call takes well under a millisecond."""

    def __init__(self, path: Path, ttl_seconds: float = 3600.0) -> None:
        self.ttl = ttl_seconds
        self._db = open_database(path, _SCHEMA)

    def create(self, record: JobRecord) -> None:
        self._db.execute(
            "INSERT INTO exec_jobs (job_id, project_id, command, status, stdout, stderr, "
            "exit_code, start, pid, elapsed_s, stats, accessed) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.job_id,
                record.project_id,
                record.command,
                record.status,
                record.stdout,
                record.stderr,
                record.exit_code,
                record.start,
                record.pid,
                record.elapsed_s,
                json.dumps(record.stats),
                time.time(),
            ),
        )

    def update(self, job_id: str, **fields: Any) -> None:
        """Set columns of one job (``stats`` as a list)."""
        unknown = set(fields) - _UPDATABLE
        if unknown:
            raise ValueError(f"not job columns: {sorted(unknown)}")
        if "stats" in fields:
            fields["stats"] = json.dumps(fields["stats"])
        columns = ", ".join(f"{name} = ?" for name in fields)  # names checked above
        self._db.execute(
            f"UPDATE exec_jobs SET {columns} WHERE job_id = ?",  # noqa: S608
            (*fields.values(), job_id),
        )

    def get(self, job_id: str, project_id: str) -> JobRecord | None:
        """The job, if it belongs to ``project_id``; reading it keeps it alive."""
        now = time.time()
        row = self._db.execute(
            "SELECT job_id, project_id, command, status, stdout, stderr, exit_code, start, "
            "pid, elapsed_s, stats FROM exec_jobs "
            "WHERE job_id = ? AND project_id = ? AND (status = 'running' OR accessed > ?)",
            (job_id, project_id, now - self.ttl),
        ).fetchone()
        if row is None:
            return None
        self._db.execute("UPDATE exec_jobs SET accessed = ? WHERE job_id = ?", (now, job_id))
        names = [f.name for f in dataclasses.fields(JobRecord)]
        return JobRecord(**dict(zip(names, [*row[:10], json.loads(row[10])], strict=True)))

    def running(self) -> list[Mapping[str, Any]]:
        rows = self._db.execute(
            "SELECT job_id, pid, start FROM exec_jobs WHERE status = 'running'"
        ).fetchall()
        return [{"job_id": r[0], "pid": r[1], "start": r[2]} for r in rows]

    def mark_orphaned(self, job_id: str, message: str = ORPHANED) -> None:
        """A job whose server died: ``error``, exit code 1, the reason appended to stderr."""
        self._db.execute(
            "UPDATE exec_jobs SET status = 'error', exit_code = 1, "
            "stderr = CASE WHEN stderr = '' THEN ? ELSE stderr || char(10) || ? END, "
            "elapsed_s = (? - start) / 1000.0 WHERE job_id = ? AND status = 'running'",
            (message, message, int(time.time() * 1000), job_id),
        )

    def purge_expired(self) -> int:
        cursor = self._db.execute(
            "DELETE FROM exec_jobs WHERE status != 'running' AND accessed <= ?",
            (time.time() - self.ttl,),
        )
        return cursor.rowcount

    def close(self) -> None:
        self._db.close()
