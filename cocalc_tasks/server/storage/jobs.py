"""Async exec jobs as rows, so they outlive a server process and are shared by its replicas.

CoCalc keeps jobs in the project process's memory (an LRU of 100, one hour after the last
read) and loses them all on a restart. Here a row is written at submit, its output is
rewritten as it arrives, and it is finished once. Each row names the replica that runs it:

- any replica reads a job (its output as of the owner's last flush), and asks for a cancel by
  setting ``cancel_requested``, which the owner acts on;
- a job whose replica died is marked ``error`` by whichever replica notices first
  (:meth:`JobStore.mark_orphaned`), never left running;
- finished jobs expire ``ttl`` seconds after they were last read; running jobs never do.

``stdout`` and ``stderr`` are stored as JSON strings: PostgreSQL's ``TEXT`` cannot hold the
NUL characters a command may print, and a job's output must come back exactly.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cocalc_tasks.server.storage.database import Database

__all__ = ["ORPHANED", "JobRecord", "JobStore"]

_UPDATABLE = frozenset({"status", "stdout", "stderr", "exit_code", "elapsed_s", "stats", "pid"})
_JSON = frozenset({"stdout", "stderr", "stats"})
_COLUMNS = (
    "job_id, project_id, command, status, stdout, stderr, exit_code, start, pid, elapsed_s, "
    "stats, replica, job_key, job_group, fingerprint"
)
#: One unexpired job of one project (a finished job lives ``ttl`` seconds after its last read).
_ONE = (
    f"SELECT {_COLUMNS} FROM exec_jobs "  # noqa: S608 - constant columns
    "WHERE job_id = ? AND project_id = ? AND (status = 'running' OR accessed > ?)"
)
ORPHANED = (
    "the cocalc-tasks server stopped while this job was running; its process group was "
    "killed and its output up to that moment is kept"
)


@dataclass
class JobRecord:
    """One row: CoCalc's async record fields plus the owning project and replica."""

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
    replica: str = ""
    #: A keyed job's key and group (CoCalc's rewrite), and the digest of what it runs.
    job_key: str | None = None
    job_group: str | None = None
    fingerprint: str | None = None

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
        if self.job_key is not None:  # the rewrite echoes them
            body["job_key"] = self.job_key
            if self.job_group is not None:
                body["job_group"] = self.job_group
        return body


def _record(row: Sequence[Any]) -> JobRecord:
    values = dict(zip(_COLUMNS.split(", "), row, strict=True))
    for name in _JSON:
        values[name] = json.loads(values[name])
    return JobRecord(**values)


class JobStore:
    """The ``exec_jobs`` table; ``replica`` is the name of the server writing through it."""

    def __init__(self, db: Database, ttl_seconds: float = 3600.0, replica: str = "") -> None:
        self.ttl = ttl_seconds
        self.replica = replica
        self.db = db

    def create(self, record: JobRecord) -> None:
        self.db.execute(
            f"INSERT INTO exec_jobs ({_COLUMNS}, accessed) "  # noqa: S608 - constant columns
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.job_id,
                record.project_id,
                record.command,
                record.status,
                json.dumps(record.stdout),
                json.dumps(record.stderr),
                record.exit_code,
                record.start,
                record.pid,
                record.elapsed_s,
                json.dumps(record.stats),
                self.replica,
                record.job_key,
                record.job_group,
                record.fingerprint,
                time.time(),
            ),
        )

    def update(self, job_id: str, **fields: Any) -> bool:
        """Set columns of one running job; False if it is no longer running (a replica
        declared its owner dead, and that verdict stands)."""
        unknown = set(fields) - _UPDATABLE
        if unknown:
            raise ValueError(f"not job columns: {sorted(unknown)}")
        values = [json.dumps(v) if name in _JSON else v for name, v in fields.items()]
        columns = ", ".join(f"{name} = ?" for name in fields)  # names checked above
        return (
            self.db.execute(
                f"UPDATE exec_jobs SET {columns} "  # noqa: S608
                "WHERE job_id = ? AND status = 'running'",
                (*values, job_id),
            )
            == 1
        )

    def get(self, job_id: str, project_id: str) -> JobRecord | None:
        """The job, if it belongs to ``project_id``; reading it keeps it alive."""
        now = time.time()
        with self.db.transaction() as tx:
            row = tx.execute(_ONE, (job_id, project_id, now - self.ttl)).one()
            if row is None:
                return None
            tx.execute("UPDATE exec_jobs SET accessed = ? WHERE job_id = ?", (now, job_id))
        return _record(row)

    def running_keyed(self, project_id: str, job_key: str) -> JobRecord | None:
        """The project's running job of this key, on any replica."""
        row = self.db.one(
            f"SELECT {_COLUMNS} FROM exec_jobs "  # noqa: S608 - constant columns
            "WHERE project_id = ? AND job_key = ? AND status = 'running'",
            (project_id, job_key),
        )
        return None if row is None else _record(row)

    def running(self, replica: str | None = None) -> list[JobRecord]:
        """Running jobs, of one replica or of all."""
        sql = f"SELECT {_COLUMNS} FROM exec_jobs WHERE status = 'running'"  # noqa: S608
        if replica is None:
            return [_record(r) for r in self.db.all(sql)]
        return [_record(r) for r in self.db.all(sql + " AND replica = ?", (replica,))]

    def recent(self, project_id: str | None = None, limit: int = 50) -> list[JobRecord]:
        """Unexpired jobs, newest first: one project's, or every project's."""
        sql = f"SELECT {_COLUMNS} FROM exec_jobs WHERE (status = 'running' OR accessed > ?)"  # noqa: S608
        params: list[object] = [time.time() - self.ttl]
        if project_id is not None:
            sql += " AND project_id = ?"
            params.append(project_id)
        sql += " ORDER BY start DESC LIMIT ?"
        params.append(limit)
        return [_record(r) for r in self.db.all(sql, tuple(params))]

    def peek(self, job_id: str, project_id: str) -> JobRecord | None:
        """The job, if it belongs to ``project_id`` and has not expired; unlike :meth:`get`
        (a client's read), looking at it does not keep it alive."""
        row = self.db.one(_ONE, (job_id, project_id, time.time() - self.ttl))
        return None if row is None else _record(row)

    def request_cancel(self, job_id: str, project_id: str) -> bool:
        """Ask the job's replica to cancel it; False if it is not running."""
        return (
            self.db.execute(
                "UPDATE exec_jobs SET cancel_requested = ? "
                "WHERE job_id = ? AND project_id = ? AND status = 'running'",
                (time.time(), job_id, project_id),
            )
            == 1
        )

    def to_stop(self, job_ids: Sequence[str]) -> list[str]:
        """Which of this replica's jobs must stop: a cancel was asked for, or another replica
        already settled the row."""
        if not job_ids:
            return []
        marks = ", ".join("?" for _ in job_ids)
        rows = self.db.all(
            f"SELECT job_id FROM exec_jobs WHERE job_id IN ({marks}) "  # noqa: S608
            "AND (cancel_requested IS NOT NULL OR status != 'running')",
            tuple(job_ids),
        )
        return [r[0] for r in rows]

    def mark_orphaned(self, job_id: str, message: str = ORPHANED) -> bool:
        """A job whose server died: ``error``, exit code 1, the reason appended to stderr.
        False if it had already finished."""
        now_ms = int(time.time() * 1000)
        with self.db.transaction() as tx:
            row = tx.execute(
                "SELECT stderr, start FROM exec_jobs WHERE job_id = ? AND status = 'running'",
                (job_id,),
            ).one()
            if row is None:
                return False
            stderr = json.loads(row[0])
            stderr = f"{stderr}\n{message}" if stderr else message
            tx.execute(
                "UPDATE exec_jobs SET status = 'error', exit_code = 1, stderr = ?, "
                "elapsed_s = ? WHERE job_id = ? AND status = 'running'",
                (json.dumps(stderr), (now_ms - int(row[1])) / 1000.0, job_id),
            )
        return True

    def purge_expired(self) -> int:
        return self.db.execute(
            "DELETE FROM exec_jobs WHERE status != 'running' AND accessed <= ?",
            (time.time() - self.ttl,),
        )
