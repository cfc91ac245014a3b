"""CocalcClient on mocked HTTP: request shape, validation, TLS, configuration and secrets."""

from __future__ import annotations

import base64
import logging

import pytest
import requests_mock

from cocalc_tasks import (
    CocalcAuthError,
    CocalcClient,
    CocalcError,
    CocalcServerError,
    CocalcValidationError,
    execute_code,
    list_kernels,
)
from tests.conftest import SECRET_KEY

HOST = "https://cocalc.example"
EXECUTE = HOST + "/api/v2/jupyter/execute"
OK = {
    "output": [{"name": "stdout", "text": "5\n"}],
    "created": "2023-04-25T17:09:33.551Z",
    "success": True,
}
PID = "6e75dbf1-0342-4249-9dce-6b21648656e9"


def test_request_body_and_basic_auth() -> None:
    with requests_mock.Mocker() as m, CocalcClient(SECRET_KEY, HOST) as client:
        m.post(EXECUTE, json=OK)
        result = client.execute(
            "print(a+b)",
            "python3",
            history=["a=2", "b=3"],
            project_id=PID,
            path="work",
            no_cache=True,
            tag="t",
        )
    req = m.last_request
    assert req.json() == {
        "input": "print(a+b)",
        "kernel": "python3",
        "history": ["a=2", "b=3"],
        "project_id": PID,
        "path": "work",
        "noCache": True,
        "tag": "t",
    }
    assert (
        req.headers["Authorization"]
        == "Basic " + base64.b64encode(f"{SECRET_KEY}:".encode()).decode()
    )
    assert req.headers["Content-Type"] == "application/json"
    assert result.stdout == "5\n" and result.kernel == "python3" and result.elapsed is not None
    from cocalc_tasks import compute_hash

    assert result.hash == compute_hash("print(a+b)", "python3", ["a=2", "b=3"], PID, "work")


def test_no_key_sends_no_auth_header() -> None:
    with requests_mock.Mocker() as m, CocalcClient(host=HOST) as client:
        m.post(EXECUTE, json=OK)
        client.execute("1", "python3")
    assert "Authorization" not in m.last_request.headers


def test_tls_verification_is_on_by_default() -> None:
    with requests_mock.Mocker() as m, CocalcClient(host=HOST) as client:
        m.post(EXECUTE, json=OK)
        client.execute("1", "python3")
        # True, or the CA bundle requests takes from REQUESTS_CA_BUNDLE: verification either way
        assert m.last_request.verify is True or isinstance(m.last_request.verify, str)
        assert client.verify is True
    assert CocalcClient().host == "https://cocalc.com"


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"input": "1", "kernel": ""}, "kernel must be a non-empty string"),
        ({"input": "1", "kernel": 3}, "kernel must be a non-empty string"),
        ({"input": b"1", "kernel": "python3"}, "input must be a string"),
        ({"input": "1", "kernel": "python3", "history": "a=1"}, "history must be a list"),
        ({"input": "1", "kernel": "python3", "history": ["a", 2]}, "history[1] must be a string"),
        ({"input": "1", "kernel": "python3", "project_id": "nope"}, "not a valid UUID"),
        ({"input": "1", "kernel": "python3", "project_id": 5}, "project_id must be a UUID"),
        ({"input": "1", "kernel": "python3", "path": 5}, "path must be a string"),
    ],
)
def test_bad_arguments_raise_before_sending(kwargs: dict[str, object], fragment: str) -> None:
    with requests_mock.Mocker() as m, CocalcClient(host=HOST) as client:
        m.post(EXECUTE, json=OK)
        with pytest.raises(CocalcValidationError) as info:
            client.execute(**kwargs)  # type: ignore[arg-type]
        assert m.call_count == 0
    assert fragment in str(info.value)
    assert isinstance(info.value, ValueError)


def test_bad_hash_is_refused_before_sending() -> None:
    with requests_mock.Mocker() as m, CocalcClient(host=HOST) as client:
        with pytest.raises(CocalcValidationError, match="40 lowercase hex"):
            client.cached("xyz")
        assert m.call_count == 0


def test_environment_and_argument_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COCALC_HOST", "http://env.example/")
    monkeypatch.setenv("COCALC_API_KEY", "sk-env")
    monkeypatch.setenv("COCALC_PROJECT_ID", PID)
    client = CocalcClient()
    assert (client.host, client.project_id, client.has_api_key) == ("http://env.example", PID, True)
    assert CocalcClient(host="http://arg.example").host == "http://arg.example"
    with requests_mock.Mocker() as m:
        m.post("http://env.example/api/v2/jupyter/execute", json=OK)
        client.execute("1", "python3")
        assert m.last_request.json()["project_id"] == PID


@pytest.mark.parametrize(
    ("status", "body", "cls", "fragment"),
    [
        (200, "<html>oops</html>", CocalcServerError, "not JSON"),
        (200, '{"output": [', CocalcServerError, "not JSON"),
        (502, "<html><body>502 Bad Gateway</body></html>", CocalcServerError, "HTTP 502"),
        (404, "Not Found", CocalcServerError, "no such API endpoint"),
        (401, "", CocalcAuthError, "HTTP 401"),
        (
            500,
            '{"error": "Jupyter API is not enabled on this server."}',
            CocalcError,
            "not enabled",
        ),
    ],
)
def test_non_api_answers(status: int, body: str, cls: type[Exception], fragment: str) -> None:
    """The v2 route's own answers (``api="auto"`` would move on: see test_routes.py)."""
    with requests_mock.Mocker() as m, CocalcClient(host=HOST, retries=0, api="v2") as client:
        m.post(EXECUTE, status_code=status, text=body)
        with pytest.raises(cls) as info:
            client.execute("1", "python3")
    assert fragment in str(info.value)
    if isinstance(info.value, CocalcServerError) and status != 200:
        assert info.value.status_code == status


def test_key_never_in_repr_logs_or_errors(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client = CocalcClient(SECRET_KEY, HOST, retries=0)
    assert SECRET_KEY not in repr(client) and "***" in repr(client)
    errors: list[str] = []
    with requests_mock.Mocker() as m:
        for body in ({"error": "account_id must be specified -- make sure you are signed in"},):
            m.post(EXECUTE, json=body)
            with pytest.raises(CocalcError) as info:
                client.execute("1", "python3")
            errors.append(str(info.value))
        m.post(EXECUTE, status_code=500, text=f"echo {SECRET_KEY} back")
        with pytest.raises(CocalcServerError) as info2:
            client.execute("1", "python3")
        errors.append(str(info2.value) + info2.value.body_excerpt)
        m.post(EXECUTE, json=OK)
        client.execute("1", "python3")
    assert all(SECRET_KEY not in text for text in errors)
    assert SECRET_KEY not in caplog.text


def test_functional_api_uses_given_client_or_builds_one() -> None:
    with requests_mock.Mocker() as m:
        m.post(EXECUTE, json=OK)
        m.post(
            HOST + "/api/v2/jupyter/kernels",
            json={
                "kernels": [{"name": "python3", "display_name": "Python 3", "language": "python"}]
            },
        )
        assert execute_code("print(5)", "python3", host=HOST).stdout == "5\n"
        with CocalcClient(host=HOST) as client:
            assert [k.name for k in list_kernels(client=client)] == ["python3"]
        assert m.call_count == 2


def test_kernels_accepts_bare_list_and_rejects_garbage() -> None:
    with requests_mock.Mocker() as m, CocalcClient(host=HOST) as client:
        m.post(HOST + "/api/v2/jupyter/kernels", json=[{"name": "x", "display_name": "X"}])
        assert client.kernels()[0].name == "x"
        m.post(HOST + "/api/v2/jupyter/kernels", json={"success": True})
        with pytest.raises(CocalcServerError, match="no 'kernels' list"):
            client.kernels()


def test_cache_hit_lookup() -> None:
    body = {**OK, "id": 12}
    with requests_mock.Mocker() as m, CocalcClient(host=HOST) as client:
        m.post(EXECUTE, json=body)
        hit = client.cached("a" * 40)
        m.post(EXECUTE, text="null")  # the conat bridge answers null on a miss
        assert client.cached("b" * 40) is None
    assert hit is not None and hit.cache_id == 12 and hit.stdout == "5\n"
