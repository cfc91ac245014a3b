"""CocalcHook: connections from environment variables (JSON and URI), extras, test_connection."""

from __future__ import annotations

import json

import pytest
import requests_mock

from airflow_provider.hooks.cocalc import CocalcHook
from tests.conftest import SECRET_KEY, load_fixture

PID = "6e75dbf1-0342-4249-9dce-6b21648656e9"


def set_conn(
    monkeypatch: pytest.MonkeyPatch, value: object, conn_id: str = "cocalc_default"
) -> None:
    text = value if isinstance(value, str) else json.dumps(value)
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", text)


@pytest.mark.parametrize(
    ("conn", "url"),
    [
        (
            {"conn_type": "cocalc", "host": "https://cocalc.example/", "password": "k"},
            "https://cocalc.example",
        ),
        (
            {"conn_type": "cocalc", "host": "cocalc.example", "password": "k"},
            "https://cocalc.example",
        ),
        (
            {"conn_type": "cocalc", "host": "127.0.0.1", "port": 8765, "schema": "http"},
            "http://127.0.0.1:8765",
        ),
        ({"conn_type": "cocalc"}, "https://cocalc.com"),
        ("cocalc://:sk-uri-key@127.0.0.1:8765/?project_id=" + PID, "https://127.0.0.1:8765"),
        ("cocalc://:sk-uri-key@http%3A%2F%2F127.0.0.1%3A8765/", "http://127.0.0.1:8765"),
        # The scheme as the URI's path (Airflow's ``schema``), as the http provider reads it.
        ("cocalc://:sk-uri-key@127.0.0.1:8765/http?project_id=" + PID, "http://127.0.0.1:8765"),
        ("cocalc://:sk-uri-key@cocalc.example/https", "https://cocalc.example"),
        ({"conn_type": "cocalc", "host": "h", "schema": "HTTP://"}, "http://h"),
    ],
)
def test_base_url_from_json_and_uri_connections(
    monkeypatch: pytest.MonkeyPatch, conn: object, url: str
) -> None:
    set_conn(monkeypatch, conn)
    assert CocalcHook().base_url == url


def test_a_wrong_scheme_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from cocalc_tasks.errors import CocalcValidationError

    set_conn(monkeypatch, "cocalc://:sk-uri-key@127.0.0.1:8765/ftp")
    with pytest.raises(CocalcValidationError, match=r"schema must be http or https.*'ftp'") as e:
        CocalcHook().base_url  # noqa: B018
    assert "sk-uri-key" not in str(e.value)


def test_the_uri_scheme_reaches_the_local_server(
    monkeypatch: pytest.MonkeyPatch, cocalc_conn: str
) -> None:
    """``cocalc://:KEY@127.0.0.1:PORT/http`` talks plain HTTP to the local server."""
    port = cocalc_conn.rsplit(":", 1)[1]
    set_conn(monkeypatch, f"cocalc://:{SECRET_KEY}@127.0.0.1:{port}/http")
    ok, message = CocalcHook().test_connection()
    assert ok, message


def test_a_uri_without_http_to_the_local_server_says_to_use_http(
    monkeypatch: pytest.MonkeyPatch, cocalc_conn: str
) -> None:
    port = cocalc_conn.rsplit(":", 1)[1]
    set_conn(monkeypatch, f"cocalc://:{SECRET_KEY}@127.0.0.1:{port}")  # no /http: https
    ok, message = CocalcHook().test_connection()
    assert not ok
    assert f"https://127.0.0.1:{port} (from the Airflow connection 'cocalc_default'" in message
    assert f"speaks plain HTTP, not TLS: use http://127.0.0.1:{port}" in message
    assert "COCALC_HOST" not in message and "WRONG_VERSION_NUMBER" not in message


def test_extras_plain_and_prefixed(monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(
        monkeypatch,
        {
            "conn_type": "cocalc",
            "host": "http://h",
            "password": SECRET_KEY,
            "extra": {"project_id": PID, "verify": "false", "timeout": 12},
        },
    )
    hook = CocalcHook()
    assert hook.project_id == PID
    assert hook.client.verify is False and hook.client.timeout == (10.0, 12.0)
    assert hook.client.project_id == PID and hook.client.has_api_key
    assert hook.get_conn() is hook.client  # one client per hook
    set_conn(
        monkeypatch,
        {"conn_type": "cocalc", "host": "http://h", "extra": {"extra__cocalc__project_id": PID}},
        "other",
    )
    assert CocalcHook("other").project_id == PID


def test_the_api_route_comes_from_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(monkeypatch, {"conn_type": "cocalc", "host": "http://h"})
    assert CocalcHook().client.api == "auto"
    set_conn(monkeypatch, "cocalc://:k@h/http?api=project&project_id=" + PID)
    hook = CocalcHook()
    assert hook.client.api == "project"
    with requests_mock.Mocker() as m:
        m.post("http://h/api/conat/project", json=[{"data": {"text/plain": "5"}}])
        assert hook.execute("2+3", "python3").route == "project"
    assert m.last_request.json()["name"] == "system.jupyterExecute"


def test_verify_defaults_on(monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(monkeypatch, {"conn_type": "cocalc", "host": "https://h"})
    assert CocalcHook().client.verify is True


def test_execute_and_kernels_send_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(
        monkeypatch,
        {
            "conn_type": "cocalc",
            "host": "http://h",
            "password": SECRET_KEY,
            "extra": {"project_id": PID},
        },
    )
    hook = CocalcHook()
    with requests_mock.Mocker() as m:
        m.post("http://h/api/v2/jupyter/execute", json=load_fixture("execute_stdout_fresh.json"))
        m.post("http://h/api/v2/jupyter/kernels", json=load_fixture("kernels_success.json"))
        assert hook.execute("print('hello world')", "python3").stdout == "hello world\n"
        assert m.last_request.json()["project_id"] == PID
        assert m.last_request.headers["Authorization"].startswith("Basic ")
        assert [k.name for k in hook.list_kernels()][:2] == ["bash", "python3"]


def test_test_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(
        monkeypatch,
        {
            "conn_type": "cocalc",
            "host": "http://h",
            "password": "sk-wrong1",
            "extra": {"project_id": PID},
        },
    )
    with requests_mock.Mocker() as m:
        m.post("http://h/api/conat/hub", json={"account_id": "a1", "server_time": 1})
        m.post("http://h/api/v2/jupyter/kernels", json=load_fixture("kernels_success.json"))
        ok, message = CocalcHook().test_connection()
        assert ok and "an account key (account a1)" in message
        assert "3 kernels in project" in message
        m.post("http://h/api/conat/hub", json={"error": "must be signed in and MUST provide..."})
        m.post("http://h/api/conat/project", json={"error": "must sign in as project or account"})
        ok, message = CocalcHook().test_connection()
    assert not ok
    assert "does not know the API key from the Airflow connection 'cocalc_default'" in message
    assert "sk-wrong1" not in message


def test_test_connection_fails_for_an_unknown_key_without_a_project(
    monkeypatch: pytest.MonkeyPatch, cocalc_conn: str
) -> None:
    """The global pool lists its kernels to anyone: listing them proved nothing of the key."""
    set_conn(monkeypatch, {"conn_type": "cocalc", "host": cocalc_conn, "password": "sk-typo"})
    ok, message = CocalcHook().test_connection()
    assert not ok and f"{cocalc_conn} does not know the API key" in message
    assert "sk-typo" not in message


def test_test_connection_against_the_local_server(cocalc_conn: str) -> None:
    ok, message = CocalcHook().test_connection()
    assert ok and cocalc_conn in message


def test_missing_connection_is_airflows_not_found() -> None:
    from airflow.providers.common.compat.sdk import AirflowNotFoundException

    with pytest.raises(AirflowNotFoundException):
        CocalcHook("no_such_conn").client  # noqa: B018


def test_retry_settings_come_from_the_connection_for_the_worker_and_the_trigger(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import asyncio

    from airflow_provider.triggers.cocalc import CocalcJobTrigger
    from cocalc_tasks.errors import CocalcValidationError

    extra = {"retries": "5", "retry_backoff": 0.01, "retry_jitter": 0, "retry_deadline": 7}
    set_conn(monkeypatch, {"conn_type": "cocalc", "host": "http://h", "extra": extra})
    trigger = CocalcJobTrigger(job_id="j", project_id=PID, cocalc_conn_id="cocalc_default")
    clients = [CocalcHook().client, asyncio.run(trigger._client())]
    for retry in (c._adapter.max_retries for c in clients):
        assert (retry.total, retry.connect, retry.status) == (5, 5, 5)
        assert (retry.backoff_factor, retry.backoff_jitter, retry.deadline) == (0.01, 0.0, 7.0)
    set_conn(monkeypatch, {"conn_type": "cocalc", "host": "http://h", "extra": {"retries": "x"}})
    with pytest.raises(CocalcValidationError, match="extra retries must be a non-negative number"):
        CocalcHook().client  # noqa: B018
