"""The result cache: SQLite under the data directory, keyed by CoCalc's content hash.

As in CoCalc's ``jupyter_api_cache``: rows expire after a month, a hit pushes the expiry out
again, ``noCache`` replaces the row, and everything the kernel returned is cached (user
exceptions included) while thrown errors are not. The file survives restarts.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["CachedResult", "ResultCache", "open_database"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jupyter_api_cache (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    hash TEXT NOT NULL,
    created TEXT NOT NULL,
    last_active REAL NOT NULL,
    expire REAL NOT NULL,
    output TEXT NOT NULL,
    project_id TEXT
);
CREATE INDEX IF NOT EXISTS jupyter_api_cache_hash ON jupyter_api_cache (hash);
"""


def open_database(path: Path, schema: str) -> sqlite3.Connection:
    """One of the server's SQLite files: autocommit, WAL, shared by the event loop's thread
    and the threads it hands work to, with ``schema`` created if missing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(schema)
    return db


@dataclass(frozen=True)
class CachedResult:
    id: int
    output: list[Any]
    created: str
    #: The project the result was computed in (None: the global pool); a hit needs access.
    project_id: str | None = None


class ResultCache:
    """Small synchronous store; each call takes well under a millisecond."""

    def __init__(self, path: Path, ttl_seconds: float = 30 * 24 * 3600.0) -> None:
        self.ttl = ttl_seconds
        self._db = open_database(path, _SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(jupyter_api_cache)")}
        if "project_id" not in columns:  # a cache file written before rows named their project
            self._db.execute("DELETE FROM jupyter_api_cache")
            self._db.execute("ALTER TABLE jupyter_api_cache ADD COLUMN project_id TEXT")

    def get(self, digest: str) -> CachedResult | None:
        now = time.time()
        row = self._db.execute(
            "SELECT id, output, created, project_id FROM jupyter_api_cache "
            "WHERE hash = ? AND expire > ? ORDER BY id DESC LIMIT 1",
            (digest, now),
        ).fetchone()
        if row is None:
            return None
        self._db.execute(
            "UPDATE jupyter_api_cache SET last_active = ?, expire = ? WHERE id = ?",
            (now, now + self.ttl, row[0]),
        )
        return CachedResult(id=row[0], output=json.loads(row[1]), created=row[2], project_id=row[3])

    def put(
        self, digest: str, output: list[Any], created: str, project_id: str | None = None
    ) -> int:
        now = time.time()
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM jupyter_api_cache WHERE hash = ?", (digest,))
            cursor = self._db.execute(
                "INSERT INTO jupyter_api_cache "
                "(hash, created, last_active, expire, output, project_id) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    digest,
                    created,
                    now,
                    now + self.ttl,
                    json.dumps(output, ensure_ascii=False),
                    project_id,
                ),
            )
        return int(cursor.lastrowid or 0)

    def purge_expired(self) -> int:
        cursor = self._db.execute("DELETE FROM jupyter_api_cache WHERE expire <= ?", (time.time(),))
        return cursor.rowcount

    def close(self) -> None:
        self._db.close()
