"""A real PostgreSQL server for the tests: Debian's binaries, ``initdb`` and ``pg_ctl`` into a
temporary folder, on a free loopback port, with a password, stopped afterwards.

Where PostgreSQL is missing the tests that need it skip with one line saying why, unless
``COCALC_REQUIRE_POSTGRES=1`` (the Makefile sets it, so CI never skips them).
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

REQUIRE_ENV = "COCALC_REQUIRE_POSTGRES"
#: The cluster's folder, in the system's temporary directory: pytest's own is private to its
#: user, and the server runs as ``postgres`` when the tests run as root.
ROOT_PREFIX = "cocalc-tasks-pg-"
USER = "cocalc"


def find_bindir() -> Path | None:
    """Where ``initdb`` and ``pg_ctl`` are: on PATH, or Debian's newest version."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(os.path.realpath(on_path)).parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version)
    return Path(found[-1]).parent if found else None


def _version(path: str) -> float:
    try:
        return float(Path(path).parent.parent.name)
    except ValueError:
        return 0.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """One cluster; :meth:`create_database` gives each user of it a database of its own."""

    def __init__(self) -> None:
        bindir = find_bindir()
        if bindir is None:
            message = (
                "PostgreSQL is not installed (no initdb): install Debian's postgresql "
                "package, or run make test, which does"
            )
            if os.environ.get(REQUIRE_ENV) == "1":
                pytest.fail(message)
            pytest.skip(message)
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix=ROOT_PREFIX))
        self.data = self.root / "pgdata"
        self.port = _free_port()
        self.password = secrets.token_hex(12)
        # initdb refuses to run as root: run the server as Debian's postgres user then.
        self._as = {"user": "postgres", "group": "postgres"} if os.geteuid() == 0 else {}

    def _run(self, *argv: str) -> None:
        subprocess.run(argv, check=True, capture_output=True, text=True, timeout=120, **self._as)

    def start(self) -> PostgresServer:
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self._as:
            shutil.chown(self.root, "postgres", "postgres")
            shutil.chown(pwfile, "postgres", "postgres")
        os.chmod(pwfile, 0o600)
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            USER,
            f"--pwfile={pwfile}",
            "--auth-host=scram-sha-256",
            "--auth-local=trust",
            "-E",
            "UTF8",
            "--no-sync",
        )
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=200"
        )
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.root / "server.log"),
            "-w",
            "-t",
            "60",
            "start",
        )
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database; returns its URL."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run(
                [str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
                capture_output=True,
                timeout=60,
                **self._as,
            )
        shutil.rmtree(self.root, ignore_errors=True)
