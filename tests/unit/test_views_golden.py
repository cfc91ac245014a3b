"""Every view of every fixture stays byte-for-byte what the raw-dict code produced.

``tests/fixtures/golden/views.json`` was written by the release before outputs were parsed into
typed items; a change to any view of any fixture shows up here as a diff.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cocalc_tasks.model.results import ExecutionResult
from cocalc_tasks.reporting.results import compact_dict, to_markdown
from tests.conftest import FIXTURES, ROOT

GOLDEN = json.loads((ROOT / "tests/fixtures/golden/views.json").read_text(encoding="utf-8"))
EXECUTE_FIXTURES = sorted(p.name for p in Path(FIXTURES).glob("execute_*.json"))


def test_every_execute_fixture_has_a_golden_view() -> None:
    assert sorted(GOLDEN) == EXECUTE_FIXTURES


@pytest.mark.parametrize("name", EXECUTE_FIXTURES)
def test_views_are_unchanged(name: str) -> None:
    body = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    result = ExecutionResult.from_response(body, kernel="python3", hash="h", elapsed=0.5)
    assert json.dumps(result.to_dict()) == GOLDEN[name]["to_dict"]
    assert json.dumps(compact_dict(result, max_chars=50)) == GOLDEN[name]["compact"]
    assert to_markdown(result) == GOLDEN[name]["md"]
    assert ExecutionResult.from_dict(result.to_dict()).to_dict() == result.to_dict()
