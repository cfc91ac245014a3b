"""Retry policy, counted on a real loopback HTTP server (urllib3's retries need real sockets)."""

from __future__ import annotations

import time

import pytest

from cocalc_tasks import (
    CocalcClient,
    CocalcConnectionError,
    CocalcServerError,
    CocalcTimeoutError,
)
from tests.support.flaky_server import Reply, closed_port, flaky_server

OK = Reply()


def fail(status: int, **kw: object) -> Reply:
    return Reply(
        status=status,
        body=b"<html>busy</html>",
        headers={"Content-Type": "text/html", **kw.pop("headers", {})},
        **kw,
    )  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("status", "ambiguous", "expected_calls"),
    [
        (429, False, 4),  # safe: the server did not run it
        (503, False, 4),
        (502, False, 1),  # ambiguous: may have run; not retried by default
        (504, False, 1),
        (502, True, 4),  # ... unless explicitly allowed
        (504, True, 4),
        (500, False, 1),
        (500, True, 1),
        (400, False, 1),
    ],
)
def test_retry_count_per_status(status: int, ambiguous: bool, expected_calls: int) -> None:
    with flaky_server(fail(status)) as (url, script):
        client = CocalcClient(host=url, retries=3, retry_ambiguous=ambiguous)
        client._adapter.max_retries.backoff_factor = 0.01  # keep the test quick
        with pytest.raises(CocalcServerError) as info:
            client.execute("1", "python3")
    assert len(script.requests) == expected_calls
    assert info.value.status_code == status
    assert "busy" in info.value.body_excerpt


def test_recovers_after_transient_503() -> None:
    with flaky_server(fail(503), fail(503), OK) as (url, script):
        client = CocalcClient(host=url, retries=3)
        client._adapter.max_retries.backoff_factor = 0.01
        assert client.execute("1", "python3").ok
    assert len(script.requests) == 3


def test_retry_after_is_honoured() -> None:
    with flaky_server(fail(429, headers={"Retry-After": "1"}), OK) as (url, script):
        started = time.monotonic()
        assert CocalcClient(host=url, retries=2).execute("1", "python3").ok
        waited = time.monotonic() - started
    assert len(script.requests) == 2
    assert waited >= 0.9


def test_total_time_is_bounded() -> None:
    with flaky_server(fail(503, headers={"Retry-After": "30"})) as (url, script):
        started = time.monotonic()
        with pytest.raises(CocalcServerError):
            CocalcClient(host=url, retries=5, retry_deadline=1.0).execute("1", "python3")
        elapsed = time.monotonic() - started
    assert elapsed < 5, "the Retry-After of 30 s must be cut to the 1 s deadline"
    assert 1 <= len(script.requests) <= 3


def test_connection_refused_is_a_connection_error() -> None:
    client = CocalcClient(host=f"http://127.0.0.1:{closed_port()}", retries=2)
    client._adapter.max_retries.backoff_factor = 0.01
    with pytest.raises(CocalcConnectionError, match="nothing is listening at"):
        client.execute("1", "python3")


def test_read_timeout_is_not_retried_by_default() -> None:
    with flaky_server(Reply(delay=1.0)) as (url, script):
        with pytest.raises(CocalcTimeoutError):
            CocalcClient(host=url, timeout=(2, 0.3), retries=3).execute("1", "python3")
        time.sleep(1.0)
    assert len(script.requests) == 1


def test_a_callers_session_keeps_retries_and_is_left_unchanged() -> None:
    """``session=`` used to skip the client's adapter: no retries, no abort(), and the
    caller's headers were changed."""
    import requests

    mine = requests.Session()
    mine.headers["X-Trace"] = "abc"
    before = dict(mine.headers)
    with flaky_server(fail(503), OK) as (url, script):
        client = CocalcClient(host=url, retries=3, session=mine)
        client._adapter.max_retries.backoff_factor = 0.01
        assert client.execute("1", "python3").ok
        client.close()
    assert len(script.requests) == 2  # retried through the client's own adapter
    assert all(headers.get("X-Trace") == "abc" for *_, headers in script.requests)
    assert dict(mine.headers) == before  # no Content-Type added to the caller's session
    assert mine.get_adapter("https://x") is not client._adapter
