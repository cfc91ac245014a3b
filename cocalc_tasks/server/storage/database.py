"""One SQL connection layer, two engines: SQLite (a file in the data directory, the default)
and PostgreSQL (shared by several server replicas).

The stores (:mod:`.cache`, :mod:`.jobs`, :mod:`.api_log`, :mod:`.replicas`) write their SQL
once, with ``?`` placeholders and types both engines accept (``TEXT``, ``BIGINT``,
``DOUBLE PRECISION``); :class:`Database` runs it on either. Times are Unix seconds computed by
the caller, so no statement depends on an engine's clock functions.

Every call runs in its own short transaction and is safe from any thread. The server makes
its calls through :func:`off_loop`: inline for SQLite (a local file, well under a millisecond,
cheaper than a hop to a thread), in a worker thread for PostgreSQL, so a slow network never
stalls its event loop.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, ParamSpec, TypeVar
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "Database",
    "DatabaseError",
    "PostgresDatabase",
    "SQLiteDatabase",
    "Transaction",
    "off_loop",
    "open_database",
    "redact_url",
]

Params = Sequence[Any]
P = ParamSpec("P")
T = TypeVar("T")


class DatabaseError(RuntimeError):
    """The database cannot be reached or used; the message names it without its password."""


class Transaction:
    """The statements of one transaction; ``?`` placeholders on both engines."""

    def __init__(self, cursor: Any, convert: bool) -> None:
        self._cursor = cursor
        self._convert = convert

    def execute(self, sql: str, params: Params = ()) -> Transaction:
        self._cursor.execute(_to_pyformat(sql) if self._convert else sql, tuple(params))
        return self

    def one(self) -> tuple[Any, ...] | None:
        row = self._cursor.fetchone()
        return None if row is None else tuple(row)

    def all(self) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in self._cursor.fetchall()]

    @property
    def rowcount(self) -> int:
        return int(self._cursor.rowcount)


class Database(ABC):
    """A connection (or pool of them) to one database."""

    #: ``sqlite`` or ``postgresql``: the only place the schema's DDL differs.
    engine: str
    #: Where it is, for logs and messages (a URL without its password).
    where: str
    #: A file on this machine: calls take well under a millisecond.
    local: bool = False

    @abstractmethod
    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """One transaction, committed when the block ends and rolled back if it raises."""

    @abstractmethod
    def close(self) -> None: ...

    # One-statement helpers, each its own transaction.
    def execute(self, sql: str, params: Params = ()) -> int:
        with self.transaction() as tx:
            return tx.execute(sql, params).rowcount

    def one(self, sql: str, params: Params = ()) -> tuple[Any, ...] | None:
        with self.transaction() as tx:
            return tx.execute(sql, params).one()

    def read_one(self, sql: str, params: Params = ()) -> tuple[Any, ...] | None:
        """One row of a read-only statement, in the cheapest way the engine has."""
        return self.one(sql, params)

    def all(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        with self.transaction() as tx:
            return tx.execute(sql, params).all()


class SQLiteDatabase(Database):
    """One file, one connection in WAL mode; a lock keeps each transaction whole."""

    engine = "sqlite"
    local = True

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.where = str(path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=10000")

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        with self._lock:
            cursor = self._db.cursor()
            cursor.execute("BEGIN IMMEDIATE")
            try:
                yield Transaction(cursor, convert=False)
            except BaseException:
                cursor.execute("ROLLBACK")
                raise
            cursor.execute("COMMIT")

    def read_one(self, sql: str, params: Params = ()) -> tuple[Any, ...] | None:
        """A plain read: no ``BEGIN IMMEDIATE``, no write lock, no commit."""
        with self._lock:
            row = self._db.execute(sql, params).fetchone()
        return None if row is None else tuple(row)

    def close(self) -> None:
        with self._lock:
            self._db.close()


class PostgresDatabase(Database):
    """A psycopg 3 connection pool. Connections are opened lazily and re-checked after errors,
    so a database restart costs the calls in flight, not the server."""

    engine = "postgresql"

    def __init__(self, url: str, *, max_size: int = 8, timeout: float = 10.0) -> None:
        try:
            import psycopg
            from psycopg_pool import ConnectionPool
        except ImportError:
            raise DatabaseError(
                "a postgresql:// database needs psycopg: pip install 'cocalc-tasks[postgres]'"
            ) from None
        self.where = redact_url(url)
        # One plain connection first: its error names the problem (refused, wrong password,
        # no such database), where the pool would only say that it gave up.
        try:
            psycopg.connect(url, connect_timeout=max(1, round(timeout))).close()
        except psycopg.Error as exc:
            raise DatabaseError(f"cannot connect to {self.where}: {_first_line(exc)}") from None
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=max_size,
            timeout=timeout,
            open=False,
            name="cocalc-tasks",
            check=ConnectionPool.check_connection,
        )
        try:
            self._pool.open(wait=True, timeout=timeout)
        except Exception as exc:
            self._pool.close()
            raise DatabaseError(f"cannot connect to {self.where}: {_first_line(exc)}") from None

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        with self._pool.connection() as conn, conn.cursor() as cursor:
            yield Transaction(cursor, convert=True)

    def close(self) -> None:
        self._pool.close()


async def off_loop(db: Database, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Call ``fn`` (a store method on ``db``) from the event loop: inline when the database
    is a local file, in a worker thread when it is across a network."""
    if db.local:
        return fn(*args, **kwargs)
    return await asyncio.to_thread(fn, *args, **kwargs)


def open_database(url: str | None, data_dir: Path, *, pool_size: int = 8) -> Database:
    """PostgreSQL for a ``postgresql://`` (or ``postgres://``) URL; SQLite in ``data_dir``
    for none. Anything else is a :class:`DatabaseError` naming what is accepted."""
    if not url:
        return SQLiteDatabase(data_dir / "state.sqlite3")
    scheme = urlsplit(url).scheme.lower()
    if scheme in {"postgresql", "postgres"}:
        return PostgresDatabase(url, max_size=pool_size)
    raise DatabaseError(
        f"unsupported database URL scheme {scheme!r} in {redact_url(url)}: "
        "use postgresql://USER:PASSWORD@HOST:PORT/DATABASE, or none for SQLite"
    )


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (also in a ``password=`` parameter)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.partition(':')[0]}:***@{host}"
    query = re.sub(r"(?i)(password=)[^&]*", r"\1***", parts.query)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


@lru_cache(maxsize=256)
def _to_pyformat(sql: str) -> str:
    """``?`` placeholders as psycopg's ``%s`` (the stores' SQL has no other ``?`` or ``%``)."""
    assert "%" not in sql, "literal % in store SQL"
    return sql.replace("?", "%s")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
