"""The result cache, keyed by CoCalc's content hash (``jupyter_api_cache``).

As on CoCalc: rows expire after a month, a hit pushes the expiry out again, ``noCache``
replaces the row, and everything the kernel returned is cached (user exceptions included)
while thrown errors are not. Every replica sharing the database shares the cache.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from cocalc_tasks.server.storage.database import Database

__all__ = ["CachedResult", "ResultCache"]


@dataclass(frozen=True)
class CachedResult:
    id: int
    output: list[Any]
    created: str
    #: The project the result was computed in (None: the global pool); a hit needs access.
    project_id: str | None = None


class ResultCache:
    def __init__(self, db: Database, ttl_seconds: float = 30 * 24 * 3600.0) -> None:
        self.ttl = ttl_seconds
        self._db = db

    def get(self, digest: str) -> CachedResult | None:
        """The newest live result for ``digest``: one indexed read. A hit should then be
        :meth:`touch`-ed (off the answer's path) to keep it for another TTL."""
        row = self._db.read_one(
            "SELECT id, output, created, project_id FROM jupyter_api_cache "
            "WHERE hash = ? AND expire > ? ORDER BY id DESC LIMIT 1",
            (digest, time.time()),
        )
        if row is None:
            return None
        return CachedResult(id=row[0], output=json.loads(row[1]), created=row[2], project_id=row[3])

    def touch(self, row_id: int) -> None:
        """Mark a result as just used: it is kept for another TTL from now (CoCalc does this
        on every hit)."""
        now = time.time()
        self._db.execute(
            "UPDATE jupyter_api_cache SET last_active = ?, expire = ? WHERE id = ?",
            (now, now + self.ttl, row_id),
        )

    def put(
        self, digest: str, output: list[Any], created: str, project_id: str | None = None
    ) -> int:
        now = time.time()
        with self._db.transaction() as tx:
            tx.execute("DELETE FROM jupyter_api_cache WHERE hash = ?", (digest,))
            row = tx.execute(
                "INSERT INTO jupyter_api_cache "
                "(hash, created, last_active, expire, output, project_id) "
                "VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                (
                    digest,
                    created,
                    now,
                    now + self.ttl,
                    json.dumps(output, ensure_ascii=False),
                    project_id,
                ),
            ).one()
        return int(row[0]) if row else 0

    def purge_expired(self) -> int:
        return self._db.execute("DELETE FROM jupyter_api_cache WHERE expire <= ?", (time.time(),))
