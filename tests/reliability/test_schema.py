"""Schemathesis against the server's OpenAPI schema: whatever it sends, no 5xx.

Hypothesis drives each operation's strategy directly (schemathesis' pytest plugin does not
load under pytest 9 here).
"""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402

from cocalc_tasks.server.local_server import LocalServer  # noqa: E402

EXAMPLES_PER_OPERATION = 40


def test_no_server_errors(server: LocalServer, capsys: pytest.CaptureFixture[str]) -> None:
    schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10  # every method of kernels and execute, and the hub
    seen: list[int] = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: object) -> None:
            response = case.call(timeout=60)  # type: ignore[attr-defined]
            seen.append(response.status_code)
            assert response.status_code < 500, (case, response.status_code, response.text[:300])
            body = response.json()
            if isinstance(body, dict) and "error" in body:
                assert isinstance(body["error"], str) and body["error"]

        check()
    assert len(seen) >= len(operations) * 5
    with capsys.disabled():
        print(
            f"\n[schemathesis] {len(operations)} operations, {len(seen)} requests, "
            f"statuses {sorted(set(seen))}"
        )
