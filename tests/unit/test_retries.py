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


# -- the environment's proxy settings ------------------------------------------------------------
def test_proxy_settings_come_from_the_environment_once_per_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """requests reads HTTPS_PROXY, NO_PROXY and REQUESTS_CA_BUNDLE for every request; the
    client's session reads them once per host, and still honours them."""
    import requests

    from cocalc_tasks.client.transport import EnvironmentOnceSession

    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "internal.example")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/bundle.pem")
    session = EnvironmentOnceSession()
    plain = requests.Session()
    for url in ("https://cocalc.com/api/v2/x", "https://internal.example/api"):
        ours = session.merge_environment_settings(url, {}, None, None, None)
        assert ours == plain.merge_environment_settings(url, {}, None, None, None)
    assert (
        session.merge_environment_settings("https://cocalc.com/a", {}, None, None, None)["proxies"][
            "https"
        ]
        == "http://proxy.example:3128"
    )
    assert session.merge_environment_settings("https://cocalc.com/a", {}, None, None, None)[
        "verify"
    ] == ("/etc/ssl/certs/bundle.pem")
    reads = 0
    real = requests.sessions.get_environ_proxies

    def counted(url: str, no_proxy: object = None) -> object:
        nonlocal reads
        reads += 1
        return real(url, no_proxy=no_proxy)

    monkeypatch.setattr(requests.sessions, "get_environ_proxies", counted)
    for _ in range(5):
        session.merge_environment_settings("https://cocalc.com/b", {}, None, None, None)
    session.merge_environment_settings("https://other.example/b", {}, None, None, None)
    assert reads == 1  # cocalc.com was read before; other.example once
    # a caller's own proxies still win, and are not mixed up with another call's
    mine = session.merge_environment_settings(
        "https://cocalc.com/b", {"https": "http://mine:1"}, None, None, None
    )
    assert mine["proxies"]["https"] == "http://mine:1"
