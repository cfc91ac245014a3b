"""Runs last in this suite: the API key used everywhere above appears in no server log,
cache or other file the server wrote."""

from __future__ import annotations

from pathlib import Path

from cocalc_tasks.server.process import LocalServer
from tests.conftest import SECRET_KEY


def test_no_key_in_server_log_or_data(server: LocalServer, reliability_dir: Path) -> None:
    files = [p for p in reliability_dir.rglob("*") if p.is_file()]
    assert (reliability_dir / "server.log") in files
    assert any(p.name.startswith("cache.sqlite3") for p in files)
    for path in files:
        assert SECRET_KEY.encode() not in path.read_bytes(), path
