"""Every fixture body parses through the real client (requests-mock on the wire)."""

from __future__ import annotations

import json

import pytest
import requests_mock

from cocalc_tasks import CocalcClient, CocalcError, ExecutionResult
from tests.conftest import FIXTURES

HOST = "https://cocalc.example"
EXECUTE = HOST + "/api/v2/jupyter/execute"

SUCCESS = sorted(p.name for p in FIXTURES.glob("execute_*.json") if "hash_miss" not in p.name)
ERRORS = sorted(p.name for p in FIXTURES.glob("error_*.json"))


def test_fixture_directory_is_complete() -> None:
    assert len(SUCCESS) == 6 and len(ERRORS) == 8


@pytest.mark.parametrize("name", SUCCESS)
def test_success_fixture_parses(name: str) -> None:
    body = json.loads((FIXTURES / name).read_text())
    with requests_mock.Mocker() as m, CocalcClient(host=HOST) as client:
        m.post(EXECUTE, json=body)
        result = client.execute("x", "python3")
    assert isinstance(result, ExecutionResult)
    assert result.outputs == body["output"]
    assert result.created is not None and result.created.year >= 2023
    assert result.from_cache == ("id" in body)
    # derived views never fail and stay consistent with the raw items
    assert result.to_dict()["outputs"] == body["output"]
    assert ExecutionResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result


@pytest.mark.parametrize("name", ERRORS)
def test_error_fixture_raises_typed_error(name: str) -> None:
    body = json.loads((FIXTURES / name).read_text())
    with requests_mock.Mocker() as m, CocalcClient(host=HOST) as client:
        m.post(EXECUTE, json=body)
        with pytest.raises(CocalcError) as info:
            client.execute("x", "python3")
    assert type(info.value) is not CocalcError, f"{name} fell through to the base class"
    assert info.value.server_message == body["error"]


def test_hash_miss_fixture_is_none(fixture_body) -> None:  # type: ignore[no-untyped-def]
    with requests_mock.Mocker() as m, CocalcClient(host=HOST) as client:
        m.post(EXECUTE, json=fixture_body("execute_hash_miss.json"))
        assert client.cached("a" * 40) is None
        assert m.last_request.json() == {"hash": "a" * 40}


def test_kernels_fixture(fixture_body) -> None:  # type: ignore[no-untyped-def]
    body = fixture_body("kernels_success.json")
    with requests_mock.Mocker() as m, CocalcClient(host=HOST) as client:
        m.post(HOST + "/api/v2/jupyter/kernels", json=body)
        kernels = client.kernels()
    assert [k.name for k in kernels] == [k["name"] for k in body["kernels"]]
    assert [k.to_dict() for k in kernels] == body["kernels"]


def test_fixture_shapes(fixture_body) -> None:  # type: ignore[no-untyped-def]
    def result(name: str) -> ExecutionResult:
        return ExecutionResult.from_response(fixture_body(name))

    assert result("execute_stdout_fresh.json").stdout == "hello world\n"
    hit = result("execute_stdout_and_result_cache_hit.json")
    assert (hit.stdout, hit.text, hit.from_cache) == ("computing...\n", "5050", True)
    png = result("execute_display_png.json").images
    assert len(png) == 1 and png[0].mime == "image/png"
    assert png[0].content.startswith(b"\x89PNG")
    exc = result("execute_user_exception.json")
    assert not exc.ok and exc.error is not None
    assert (exc.error.ename, exc.error.evalue) == ("ZeroDivisionError", "division by zero")
    assert "\x1b[" not in exc.error.traceback and "\x1b[" in "".join(exc.error.raw_traceback)
    mixed = result("execute_mixed_stderr_html_truncated.json")
    assert mixed.truncated and mixed.stderr == "warning: careful\n"
    assert mixed.data[0]["text/html"] == "<b>bold</b>"
    timeout = result("execute_cell_timeout_python.json")
    assert timeout.timed_out and timeout.error is not None and timeout.error.is_interrupt
    assert timeout.stdout == "start\n"
