"""CocalcExecuteOperator without a metadata DB: log, XCom value, failures, templating, images."""

from __future__ import annotations

import base64
import json
import threading
import time
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import requests_mock

from airflow_provider.operators.cocalc import (
    PROJECT_URL_KEY,
    CocalcExecuteOperator,
    CocalcListKernelsOperator,
)
from cocalc_tasks import CocalcConnectionError
from tests.conftest import SECRET_KEY, load_fixture
from tests.support.flaky_server import Reply, flaky_server

HOST = "http://cocalc.test"
EXECUTE = HOST + "/api/v2/jupyter/execute"
PID = "6e75dbf1-0342-4249-9dce-6b21648656e9"


@pytest.fixture(autouse=True)
def conn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_COCALC_DEFAULT",
        json.dumps({"conn_type": "cocalc", "host": HOST, "password": SECRET_KEY}),
    )


def context() -> dict[str, Any]:
    ti = mock.MagicMock(dag_id="d", run_id="r", task_id="t", map_index=-1)
    return {"ti": ti}


def run(op: CocalcExecuteOperator, body: object) -> tuple[dict[str, Any], dict[str, Any]]:
    ctx = context()
    with requests_mock.Mocker() as m:
        m.post(EXECUTE, json=body)
        value = op.execute(ctx)  # type: ignore[arg-type]
        return value, m.last_request.json()


def test_log_and_xcom(capfd: pytest.CaptureFixture[str]) -> None:
    body = {
        "output": [
            {"name": "stdout", "text": "\x1b[32mgreen\x1b[0m\n"},
            {"name": "stderr", "text": "careful\n"},
            {"data": {"text/plain": "7 * 17^2"}},
        ],
        "created": "2025-01-01T00:00:00Z",
    }
    op = CocalcExecuteOperator(task_id="t", kernel="sage-10.4", input="factor(2023)")
    value, sent = run(op, body)
    log = capfd.readouterr().out  # Airflow 3 task logs are structlog lines on stdout
    assert sent == {"input": "factor(2023)", "kernel": "sage-10.4"}
    assert value["text"] == "7 * 17^2" and value["ok"] is True
    json.dumps(value)  # JSON-safe
    assert "[stdout] green" in log and "\x1b[32m" not in log
    assert "[stderr] careful" in log and "[result] 7 * 17^2" in log
    assert SECRET_KEY not in log and SECRET_KEY not in json.dumps(value)


def test_remote_exception_fails_without_retry(capfd: pytest.CaptureFixture[str]) -> None:
    from airflow.providers.common.compat.sdk import AirflowFailException

    op = CocalcExecuteOperator(task_id="t", kernel="python3", input="1/0", retries=3)
    with pytest.raises(AirflowFailException) as info:
        run(op, load_fixture("execute_user_exception.json"))
    assert "ZeroDivisionError: division by zero" in str(info.value)
    assert "Traceback" in str(info.value) and "\x1b[" not in str(info.value)
    log = capfd.readouterr().out
    assert "[error] ZeroDivisionError: division by zero" in log and "Cell In[1]" in log


def test_fail_on_error_false_returns_the_result() -> None:
    op = CocalcExecuteOperator(task_id="t", kernel="python3", input="1/0", fail_on_error=False)
    value, _ = run(op, load_fixture("execute_user_exception.json"))
    assert value["ok"] is False and value["error"]["ename"] == "ZeroDivisionError"


def test_permanent_api_errors_fail_and_transient_ones_retry() -> None:
    from airflow.providers.common.compat.sdk import AirflowFailException

    op = CocalcExecuteOperator(task_id="t", kernel="nope", input="1")
    with pytest.raises(AirflowFailException, match="Unable to Spawn"):
        run(op, load_fixture("error_unknown_kernel.json"))
    with pytest.raises(Exception) as info:
        run(op, load_fixture("error_quota_account.json"))
    assert not isinstance(info.value, AirflowFailException)
    assert_no_cause_loop(info.value)
    with pytest.raises(AirflowFailException) as failed:
        run(op, load_fixture("error_unknown_kernel.json"))
    assert_no_cause_loop(failed.value)


def assert_no_cause_loop(error: BaseException) -> None:
    """The chain a traceback renderer follows (``__cause__``, else ``__context__``) ends: no
    exception is chained to itself, which sends some log renderers into a loop."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None:
        assert id(current) not in seen, f"{current!r} appears twice in its own cause chain"
        seen.add(id(current))
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )


def test_templating_renders_fields() -> None:
    op = CocalcExecuteOperator(
        task_id="t",
        kernel="{{ params.k }}",
        input="print('{{ run_id }}')",
        history=["n = {{ params.n }}"],
        path="{{ params.p }}",
    )
    op.render_template_fields({"params": {"k": "python3", "n": 3, "p": "w"}, "run_id": "r1"})
    assert (op.kernel, op.input, op.history, op.path) == ("python3", "print('r1')", ["n = 3"], "w")


def test_code_file_is_sent_unrendered(tmp_path: Path) -> None:
    code = 'd = {"a": 1}\nprint(f"{{d}} {%raw%}")\n'
    (tmp_path / "job.py").write_text(code)
    op = CocalcExecuteOperator(
        task_id="t", kernel="python3", code_file=str(tmp_path / "{{ params.name }}")
    )
    op.render_template_fields({"params": {"name": "job.py"}})
    _, sent = run(op, load_fixture("execute_stdout_fresh.json"))
    assert sent["input"] == code


def test_exactly_one_code_source() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        CocalcExecuteOperator(task_id="t", kernel="python3")
    with pytest.raises(ValueError, match="exactly one"):
        CocalcExecuteOperator(task_id="t", kernel="python3", input="1", code_file="x.py")


def test_images_go_to_storage_and_xcom_holds_paths(tmp_path: Path) -> None:
    body = load_fixture("execute_display_png.json")
    op = CocalcExecuteOperator(
        task_id="t", kernel="python3", input="x", save_images_to=f"file://{tmp_path}"
    )
    value, _ = run(op, body)
    assert len(value["images"]) == 1 and value["images"][0].endswith("output-0.png")
    written = list(tmp_path.rglob("*.png"))
    assert len(written) == 1 and written[0].read_bytes().startswith(b"\x89PNG")
    assert "iVBOR" not in json.dumps(value)  # no base64 PNG anywhere in the XCom


def test_large_outputs_are_cut_with_a_marker() -> None:
    big = {"output": [{"name": "stdout", "text": "x" * 50_000}], "created": None}
    op = CocalcExecuteOperator(task_id="t", kernel="python3", input="x", max_xcom_chars=1000)
    value, _ = run(op, big)
    assert "more characters cut" in value["stdout"] and len(json.dumps(value)) < 5000
    base64_png = base64.b64encode(b"\x89PNG" + b"0" * 10_000).decode()
    value, _ = run(op, {"output": [{"data": {"image/png": base64_png}}]})
    assert "bytes omitted" in json.dumps(value)


def test_project_link_value_is_pushed() -> None:
    ctx = context()
    op = CocalcExecuteOperator(task_id="t", kernel="python3", input="1", project_id=PID)
    with requests_mock.Mocker() as m:
        m.post(EXECUTE, json=load_fixture("execute_stdout_fresh.json"))
        op.execute(ctx)  # type: ignore[arg-type]
    ctx["ti"].xcom_push.assert_called_with(key=PROJECT_URL_KEY, value=f"{HOST}/projects/{PID}")


def test_on_kill_aborts_the_request(monkeypatch: pytest.MonkeyPatch) -> None:
    with flaky_server(Reply(delay=5)) as (url, _):
        monkeypatch.setenv(
            "AIRFLOW_CONN_COCALC_DEFAULT", json.dumps({"conn_type": "cocalc", "host": url})
        )
        op = CocalcExecuteOperator(task_id="t", kernel="python3", input="1")
        errors: list[BaseException] = []

        def target() -> None:
            try:
                op.execute(context())  # type: ignore[arg-type]
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=target)
        started = time.monotonic()
        thread.start()
        time.sleep(0.5)
        op.on_kill()
        thread.join(timeout=10)
        took = time.monotonic() - started
    assert not thread.is_alive() and took < 3
    assert isinstance(errors[0], CocalcConnectionError)


def test_list_kernels_operator() -> None:
    op = CocalcListKernelsOperator(task_id="k")
    with requests_mock.Mocker() as m:
        m.post(HOST + "/api/v2/jupyter/kernels", json=load_fixture("kernels_success.json"))
        value = op.execute(context())  # type: ignore[arg-type]
    assert value["names"] == ["bash", "python3", "sage-10.4"]
    assert value["kernels"][0]["display_name"] == "Bash (Linux)"
