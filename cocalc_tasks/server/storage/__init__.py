"""Where the server keeps what outlives a request: the result cache, the API log, the exec
jobs and the replica registry. SQLite in the data directory by default; PostgreSQL
(``--database-url``) when several replicas share them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cocalc_tasks.server.storage.api_log import ApiCall, ApiLog
from cocalc_tasks.server.storage.cache import CachedResult, ResultCache
from cocalc_tasks.server.storage.database import (
    Database,
    DatabaseError,
    off_loop,
    open_database,
    redact_url,
)
from cocalc_tasks.server.storage.jobs import JobRecord, JobStore
from cocalc_tasks.server.storage.replicas import ReplicaRegistry
from cocalc_tasks.server.storage.schema import migrate

__all__ = [
    "ApiCall",
    "ApiLog",
    "CachedResult",
    "Database",
    "DatabaseError",
    "JobRecord",
    "JobStore",
    "ReplicaRegistry",
    "ResultCache",
    "Storage",
    "off_loop",
    "open_storage",
    "redact_url",
]


@dataclass
class Storage:
    """The stores of one replica, over one database."""

    db: Database
    cache: ResultCache
    jobs: JobStore
    api_log: ApiLog
    replicas: ReplicaRegistry

    def purge_expired(self) -> int:
        return self.cache.purge_expired() + self.jobs.purge_expired() + self.api_log.purge_expired()

    def close(self) -> None:
        self.db.close()


def open_storage(
    url: str | None,
    data_dir: Path,
    *,
    replica: str,
    cache_ttl: float = 30 * 24 * 3600.0,
    job_ttl: float = 3600.0,
    log_ttl: float = 30 * 24 * 3600.0,
    pool_size: int = 8,
) -> Storage:
    """Connect, bring the schema up to date, and build the stores."""
    db = open_database(url, data_dir, pool_size=pool_size)
    try:
        migrate(db)
    except DatabaseError:
        db.close()
        raise
    except Exception as exc:
        db.close()
        text = str(exc).strip().splitlines() or [type(exc).__name__]
        raise DatabaseError(f"cannot prepare the tables in {db.where}: {text[0]}") from None
    return Storage(
        db=db,
        cache=ResultCache(db, cache_ttl),
        jobs=JobStore(db, job_ttl, replica),
        api_log=ApiLog(db, replica, log_ttl),
        replicas=ReplicaRegistry(db, replica),
    )
