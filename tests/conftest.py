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
