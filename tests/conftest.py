"""Shared fixtures: the CoCalc fixture bodies, and secrets that must never leak."""

from __future__ import annotations

import json
import os
import uuid
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


#: Marks every process this suite starts (they inherit the environment), so the check below
#: counts only this suite's: not a user's own server, nor another test run's, beside it.
SESSION_VARIABLE = "COCALC_TASKS_TEST_SESSION"
os.environ[SESSION_VARIABLE] = uuid.uuid4().hex


def _of_this_suite(pid: int) -> bool:
    mark = f"{SESSION_VARIABLE}={os.environ[SESSION_VARIABLE]}".encode()
    try:
        return mark in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """No server of the suite, and no kernel or database of one, outlives the suite.

    Every process the suite starts inherits :data:`SESSION_VARIABLE`, so only those are
    counted: a user's own server running beside the suite, or another test run, is none of
    its business."""
    import time

    from tests.support.procs import processes_mentioning

    def left_behind() -> list[int]:
        return [
            pid
            for marker in ("/kernel-", "cocalc_tasks serve", "bin/postgres")
            for pid in processes_mentioning(marker)
            if _of_this_suite(pid)
        ]

    deadline = time.monotonic() + 10
    while (left := left_behind()) and time.monotonic() < deadline:
        time.sleep(0.2)
    if left:
        print(f"\nERROR: server or kernel processes left behind after the suite: {left}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
