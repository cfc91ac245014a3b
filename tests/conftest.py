"""Shared fixtures: the CoCalc fixture bodies, and secrets that must never leak."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: Response bodies from shared/fixtures/cocalc (see its README), copied so a clone is complete.
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


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """No kernel outlives the suite: every server's kernels use connection files named
    ``<data dir>/scratch/kernel-*.json``, so any survivor is found by its command line."""
    import time

    from tests.support.procs import processes_mentioning

    deadline = time.monotonic() + 10
    while (left := processes_mentioning("/scratch/kernel-")) and time.monotonic() < deadline:
        time.sleep(0.2)
    if left:
        print(f"\nERROR: kernel processes left behind after the suite: {left}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
