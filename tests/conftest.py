"""Shared fixtures: the CoCalc fixture bodies, and secrets that must never leak."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.support.postgres import PostgresServer

ROOT = Path(__file__).resolve().parent.parent
#: CoCalc response bodies (how each was obtained: tests/fixtures/cocalc/README.md).
FIXTURES = ROOT / "tests/fixtures/cocalc"

#: The API key used across the suite; tests/reliability scans everything for it at the end.
SECRET_KEY = "sk-TESTSECRETabcdef123456"


def load_fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


@pytest.fixture
def fixture_body() -> Any:
    return load_fixture


@pytest.fixture(autouse=True)
def _no_cocalc_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never pick up a developer's real COCALC_* settings."""
    for name in ("COCALC_API_KEY", "COCALC_HOST", "COCALC_PROJECT_ID"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL server of the suite's own (see tests/support/postgres.py)."""
    from tests.support.postgres import PostgresServer

    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """No server of the suite, and no kernel of one, outlives the suite.

    Every server's kernels name ``<data dir>/.../kernel-*`` on their command line, and the
    suite's servers keep their data under pytest's temporary directory or in a ``LocalServer``
    temporary directory, so only those are counted: a user's own server running beside the
    suite is none of its business."""
    import time

    from cocalc_tasks.server.local_server import DATA_DIR_PREFIX
    from tests.support.postgres import ROOT_PREFIX
    from tests.support.procs import cmdline, processes_mentioning

    roots = [
        str(session.config._tmp_path_factory.getbasetemp()),
        f"/{DATA_DIR_PREFIX}",
        f"/{ROOT_PREFIX}",
    ]

    def left_behind() -> list[int]:
        return [
            pid
            for marker in ("/kernel-", "cocalc_tasks serve", "bin/postgres")
            for pid in processes_mentioning(marker)
            if any(root in cmdline(pid) for root in roots)
        ]

    deadline = time.monotonic() + 10
    while (left := left_behind()) and time.monotonic() < deadline:
        time.sleep(0.2)
    if left:
        print(f"\nERROR: server or kernel processes left behind after the suite: {left}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
