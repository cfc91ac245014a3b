"""The API log (``jupyter_api_log``): one row per Jupyter execute call, as CoCalc keeps.

A row says who called (the account id derived from the key, the project of a project key, or
the client address of an anonymous caller; never the key itself), what ran (kernel, hash,
project, path, tag), whether the cache answered, how long it took and the error, if any. The
hourly quotas are sums over it (:meth:`ApiLog.usage`). Rows expire after ``ttl`` seconds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from cocalc_tasks.server.storage.database import Database

__all__ = ["ApiCall", "ApiLog", "LoggedCall"]


@dataclass(frozen=True)
class ApiCall:
    route: str
    account_id: str | None
    anonymous_id: str | None
    project_id: str | None
    path: str | None
    kernel: str | None
    hash: str | None
    tag: str | None
    cached: bool
    total_time_s: float
    error: str | None = None


@dataclass(frozen=True)
class LoggedCall:
    """One API log row as the pages show it."""

    created: float
    kernel: str | None
    cached: bool
    total_time_s: float
    error: str | None


def _text(value: str | None, limit: int = 1024) -> str | None:
    """Free text as a column can hold it: no NUL (PostgreSQL refuses it), bounded length."""
    return None if value is None else value.replace("\x00", "\ufffd")[:limit]


class ApiLog:
    def __init__(self, db: Database, replica: str, ttl_seconds: float = 30 * 24 * 3600.0) -> None:
        self.ttl = ttl_seconds
        self.replica = replica
        self._db = db

    def record(self, call: ApiCall) -> None:
        now = time.time()
        self._db.execute(
            "INSERT INTO jupyter_api_log (created, expire, replica, route, account_id, "
            "anonymous_id, project_id, path, kernel, hash, tag, cached, total_time_s, error) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                now,
                now + self.ttl,
                self.replica,
                call.route,
                call.account_id,
                _text(call.anonymous_id),
                call.project_id,
                _text(call.path),
                _text(call.kernel),
                call.hash,
                _text(call.tag),
                int(call.cached),
                call.total_time_s,
                _text(call.error),
            ),
        )

    def usage(
        self,
        period: float,
        *,
        account_id: str | None = None,
        anonymous_id: str | None = None,
    ) -> float:
        """Seconds computed in the global pool in the last ``period`` seconds (cache hits and
        project calls excluded, as CoCalc counts): one caller's, or everyone's."""
        sql = (
            "SELECT COALESCE(SUM(total_time_s), 0) FROM jupyter_api_log WHERE created >= ? "
            "AND cached = 0 AND project_id IS NULL AND path IS NULL"
        )
        params: list[object] = [time.time() - period]
        if account_id is not None:
            sql += " AND account_id = ?"
            params.append(account_id)
        elif anonymous_id is not None:
            sql += " AND anonymous_id = ?"
            params.append(anonymous_id)
        row = self._db.one(sql, params)
        return float(row[0]) if row else 0.0

    def recent(self, project_id: str, limit: int = 50) -> list[LoggedCall]:
        """A project's latest Jupyter calls, newest first."""
        rows = self._db.all(
            "SELECT created, kernel, cached, total_time_s, error FROM jupyter_api_log "
            "WHERE project_id = ? ORDER BY created DESC LIMIT ?",
            (project_id, limit),
        )
        return [LoggedCall(float(r[0]), r[1], bool(r[2]), float(r[3]), r[4]) for r in rows]

    def active_projects(self, since: float) -> dict[str, tuple[int, float]]:
        """``project_id -> (calls, last call time)`` for projects that called since ``since``."""
        rows = self._db.all(
            "SELECT project_id, COUNT(*), MAX(created) FROM jupyter_api_log "
            "WHERE created >= ? AND project_id IS NOT NULL GROUP BY project_id",
            (since,),
        )
        return {str(r[0]): (int(r[1]), float(r[2])) for r in rows}

    def cache_counts(self, since: float) -> tuple[int, int]:
        """``(answered from the cache, computed)`` among the successful calls since ``since``."""
        rows = self._db.all(
            "SELECT cached, COUNT(*) FROM jupyter_api_log WHERE created >= ? AND error IS NULL "
            "AND kernel IS NOT NULL GROUP BY cached",
            (since,),
        )
        counts = {int(r[0]): int(r[1]) for r in rows}
        return counts.get(1, 0), counts.get(0, 0)

    def purge_expired(self) -> int:
        return self._db.execute("DELETE FROM jupyter_api_log WHERE expire <= ?", (time.time(),))
