"""The exec API client against every exec fixture, in CoCalc master's and the rewrite's words.

Master wraps failures as ``Error executing command '<cmd>' with args '<args>' -- <text>``;
the rewrite sends ``<text>`` alone (docs/exec-api.md). Each error case runs in both forms.
"""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path
from typing import Any

import pytest
import requests_mock

from cocalc_tasks import (
    CocalcAuthError,
    CocalcCapabilityError,
    CocalcClient,
    CocalcCommandError,
    CocalcCommandTimeoutError,
    CocalcError,
    CocalcPermissionError,
    CocalcTimeoutError,
    CocalcUnknownJobError,
    CocalcUnsupportedError,
    CocalcValidationError,
    CommandResult,
    Job,
    cancel_job,
    run_command,
    submit_command,
    wait_for_job,
)
from cocalc_tasks.model.exec_requests import ExecRequest
from tests.conftest import SECRET_KEY

FIXTURES = Path(__file__).parents[1] / "fixtures" / "cocalc-exec"
HOST = "https://cocalc.example"
EXEC = HOST + "/api/v2/exec"
PID = "6e75dbf1-0342-4249-9dce-6b21648656e9"
MASTER_PREFIX = re.compile(r"^Error executing command '.*?' with args '.*?' -- (Error: )?", re.S)


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


def body(name: str) -> dict[str, Any]:
    response: dict[str, Any] = fixture(name)["response"]["body"]
    return response


def rewrite(error_body: dict[str, Any]) -> dict[str, Any]:
    """The same failure as cocalc-ai words it: no master prefix, no leading ``Error: ``."""
    return {"error": MASTER_PREFIX.sub("", error_body["error"])}


def client() -> CocalcClient:
    return CocalcClient(SECRET_KEY, HOST, project_id=PID, retries=0)


def test_every_fixture_is_exercised() -> None:
    names = {p.name for p in FIXTURES.glob("*.json")}
    tested = {
        "exec_blocking_ok.json",
        "exec_blocking_nonzero_err.json",
        "exec_timeout.json",
        "exec_max_output.json",
        "exec_async_start.json",
        "exec_async_running.json",
        "exec_async_completed.json",
        "exec_async_error.json",
        "exec_async_unknown_job.json",
        "exec_not_collaborator.json",
        "exec_async_cancel.json",
        "conat_system_exec.json",  # the server suite replays this one
    }
    assert names == tested


def test_blocking_ok_sends_err_on_exit_false() -> None:
    with requests_mock.Mocker() as m, client() as c:
        m.post(EXEC, json=body("exec_blocking_ok.json"))
        result = c.exec("echo", ["hello", "world"])
    sent = m.last_request.json()
    assert sent == {**fixture("exec_blocking_ok.json")["request"]["body"], "err_on_exit": False}
    assert result.stdout == "hello world\n" and result.exit_code == 0 and result.ok
    assert result.elapsed is not None and result.status == "completed"
    assert result.command == "echo hello world"


@pytest.mark.parametrize("flavour", ["master", "rewrite"])
def test_nonzero_exit_message_becomes_command_error(flavour: str) -> None:
    answer = body("exec_blocking_nonzero_err.json")
    answer = answer if flavour == "master" else rewrite(answer)
    with requests_mock.Mocker() as m, client() as c:
        m.post(EXEC, json=answer)
        with pytest.raises(CocalcCommandError) as info:
            c.exec("ls /nonexistent")
    error = info.value
    assert error.exit_code == 2
    assert error.stderr == "ls: cannot access '/nonexistent': No such file or directory\n"
    assert error.command == "ls /nonexistent"
    assert error.server_message == answer["error"]
    assert not error.transient


def test_nonzero_exit_from_the_body_keeps_stdout() -> None:
    """With err_on_exit false (what we send), CoCalc returns the real code and both streams."""
    with requests_mock.Mocker() as m, client() as c:
        m.post(EXEC, json={"stdout": "partial\n", "stderr": "bad\n", "exit_code": 42})
        result = c.exec("job", err_on_exit=False)
        assert not result.ok and result.exit_code == 42 and result.stdout == "partial\n"
        with pytest.raises(CocalcCommandError) as info:
            c.exec("job")
    assert info.value.exit_code == 42 and info.value.stdout == "partial\n"
    assert info.value.result is not None and info.value.result.stderr == "bad\n"
    assert "bad" in str(info.value)


@pytest.mark.parametrize("flavour", ["master", "rewrite"])
def test_killed_command_is_a_command_timeout(flavour: str) -> None:
    answer = body("exec_timeout.json")
    answer = answer if flavour == "master" else rewrite(answer)
    with requests_mock.Mocker() as m, client() as c:
        m.post(EXEC, json=answer)
        with pytest.raises(CocalcCommandTimeoutError) as info:
            c.exec("sleep 10", timeout=2)
    assert isinstance(info.value, CocalcTimeoutError)
    assert info.value.command == "bash /tmp/cocalc-k3J9Qz/a.sh"
    assert not info.value.transient  # the same command would be killed again
    assert m.last_request.json()["timeout"] == 2


def test_blocking_read_timeout_covers_the_command_timeout() -> None:
    seen: list[Any] = []
    with requests_mock.Mocker() as m, client() as c:
        m.post(EXEC, json=body("exec_blocking_ok.json"))
        original = c._session.post

        def spy(*args: Any, **kwargs: Any) -> Any:
            seen.append(kwargs["timeout"])
            return original(*args, **kwargs)

        c._session.post = spy  # type: ignore[method-assign]
        c.exec("echo", timeout=300)
        c.exec("echo", timeout=0)
        c.exec("echo")
    assert seen[0][1] >= 300 and seen[1][1] is None and seen[2][1] >= 60


def test_max_output_marker() -> None:
    with requests_mock.Mocker() as m, client() as c:
        m.post(EXEC, json=body("exec_max_output.json"))
        result = c.exec("echo", ["xyz", "abc"], max_output=3)
    assert result.truncated and result.stdout.startswith("xyz")
    assert m.last_request.json()["max_output"] == 3


def test_submit_returns_a_job() -> None:
    with requests_mock.Mocker() as m, client() as c:
        m.post(EXEC, json=body("exec_async_start.json"))
        job = c.submit("for i in 1 2 3; do echo i=$i; sleep 1; done", bash=True)
    sent = m.last_request.json()
    assert sent["async_call"] is True and sent["err_on_exit"] is False and sent["bash"] is True
    assert job == Job(
        job_id="b1f0c6de-2f7e-4a57-9a43-0f3c2d1e8a77",
        project_id=PID,
        pid=48213,
        start=1783166400000,
        status="running",
        command="for i in 1 2 3; do echo i=$i; sleep 1; done",
    )


def test_job_status_running_then_completed_with_stats() -> None:
    job_id = "b1f0c6de-2f7e-4a57-9a43-0f3c2d1e8a77"
    with requests_mock.Mocker() as m, client() as c:
        m.post(EXEC, json=body("exec_async_running.json"))
        running = c.job(job_id)
        m.post(EXEC, json=body("exec_async_completed.json"))
        done = c.job(job_id, stats=True)
    assert m.last_request.json() == {"project_id": PID, "async_get": job_id, "async_stats": True}
    assert not running.done and running.stdout == "i=1\ni=2\n" and running.elapsed_s is None
    assert done.done and done.elapsed_s == 3.021 and len(done.stats) == 2
    assert done.stats[0].mem_rss == 3.55 and done.stats[0].timestamp == 1783166401002
    result = done.result("loop")
    assert result.ok and result.stdout == "i=1\ni=2\ni=3\n" and result.command == "loop"
    with pytest.raises(ValueError, match="still running"):
        running.result()


def test_async_error_record_raises_on_demand() -> None:
    with requests_mock.Mocker() as m, client() as c:
        m.post(EXEC, json=body("exec_async_error.json"))
        status = c.job("5d0e2a4b-8c61-4f0e-b7a2-93c1e4d6f210")
    result = status.result()
    assert status.status == "error" and not result.ok and not result.timed_out
    with pytest.raises(CocalcCommandError) as info:
        result.raise_for_status()
    assert info.value.stderr == "baz\n" and info.value.exit_code == 1


@pytest.mark.parametrize("flavour", ["master", "rewrite"])
def test_unknown_job(flavour: str) -> None:
    answer = body("exec_async_unknown_job.json")
    answer = answer if flavour == "master" else rewrite(answer)
    if flavour == "rewrite":
        assert answer["error"].startswith("Async operation")
    with requests_mock.Mocker() as m, client() as c:
        m.post(EXEC, json=answer)
        with pytest.raises(CocalcUnknownJobError) as info:
            c.job("00000000-0000-4000-8000-000000000000")
    assert info.value.job_id == "00000000-0000-4000-8000-000000000000"
    assert "one hour" in str(info.value)


@pytest.mark.parametrize(
    ("message", "cls"),
    [
        ("user must be a collaborator on the project", CocalcPermissionError),  # master
        ("user must be a collaborator on project", CocalcPermissionError),  # rewrite
        ("must be signed in", CocalcAuthError),
        ("must be signed in with a valid account API key", CocalcAuthError),
        (
            f"API key lacks required capability 'project:exec' for project {PID}",
            CocalcCapabilityError,
        ),
        ("method_not_allowed", CocalcUnsupportedError),
        (
            "Error: unknown function 'system.jupyterExecute' -- available functions are []",
            CocalcUnsupportedError,
        ),
    ],
)
def test_refusals_map_to_the_error_tree(message: str, cls: type[CocalcError]) -> None:
    if message.startswith("user must be a collaborator on the"):
        assert body("exec_not_collaborator.json") == {"error": message}
    with requests_mock.Mocker() as m, client() as c:
        m.post(EXEC, json={"error": message})
        with pytest.raises(cls) as info:
            c.exec("echo", ["hi"])
    assert info.value.server_message == message and info.value.hint


def test_wait_reconnects_after_transport_timeouts_of_both_flavours() -> None:
    """Master's hub gives up with "undefined", the rewrite's with "timeout": await again."""
    job_id = "b1f0c6de-2f7e-4a57-9a43-0f3c2d1e8a77"
    with requests_mock.Mocker() as m, client() as c:
        m.post(
            EXEC,
            [
                {"json": {"error": "undefined"}},
                {"json": {"error": "timeout"}},
                {"json": body("exec_async_completed.json")},
            ],
        )
        result = c.wait(job_id)
    assert m.call_count == 3
    assert all(r.json()["async_await"] is True for r in m.request_history)
    assert result.ok and result.stdout == "i=1\ni=2\ni=3\n" and result.job_id == job_id


def test_wait_streams_only_new_output() -> None:
    job_id = "b1f0c6de-2f7e-4a57-9a43-0f3c2d1e8a77"
    running = body("exec_async_running.json")
    seen: list[tuple[str, str]] = []
    with requests_mock.Mocker() as m, client() as c:
        m.post(
            EXEC,
            [
                {"json": {**running, "stdout": "i=1\n"}},
                {"json": running},
                {"json": running},
                {"json": {**body("exec_async_completed.json"), "stderr": "warn\n"}},
            ],
        )
        result = c.wait(job_id, on_output=lambda s, t: seen.append((s, t)), poll_interval=0.01)
    assert seen == [
        ("stdout", "i=1\n"),
        ("stdout", "i=2\n"),
        ("stdout", "i=3\n"),
        ("stderr", "warn\n"),
    ]
    assert "".join(t for s, t in seen if s == "stdout") == result.stdout


def test_wait_deadline_leaves_the_job_running() -> None:
    with requests_mock.Mocker() as m, client() as c:
        m.post(EXEC, json=body("exec_async_running.json"))
        with pytest.raises(CocalcTimeoutError, match="keeps running"):
            c.wait(
                "b1f0c6de-2f7e-4a57-9a43-0f3c2d1e8a77",
                deadline=0.05,
                on_output=print,
                poll_interval=0.01,
            )
    assert not any("async_cancel" in r.json() for r in m.request_history)


def test_cancel_with_async_cancel() -> None:
    request = fixture("exec_async_cancel.json")["request"]["body"]
    with requests_mock.Mocker() as m, client() as c:
        m.post(EXEC, json=body("exec_async_cancel.json"))
        status = c.cancel(request["async_cancel"])
    assert m.last_request.json() == request
    assert status.status == "killed" and status.stdout == "started\n" and status.exit_code == 1
    with pytest.raises(CocalcCommandError, match="cancelled"):
        status.result().raise_for_status()


def test_cancel_falls_back_to_signalling_the_process_group_on_master() -> None:
    """Master drops ``async_cancel`` and fails on the missing command: kill -TERM, then KILL."""
    job_id = "b1f0c6de-2f7e-4a57-9a43-0f3c2d1e8a77"
    master_answer = {
        "error": "Error executing command 'undefined' with args 'undefined' -- "
        "TypeError: Cannot read properties of undefined (reading 'split')"
    }
    finished = {**body("exec_async_completed.json"), "exit_code": 0}
    with requests_mock.Mocker() as m, client() as c:
        m.post(
            EXEC,
            [
                {"json": master_answer},
                {"json": body("exec_async_running.json")},
                {"json": {"stdout": "", "stderr": "", "exit_code": 0, "type": "blocking"}},
                {"json": finished},
            ],
        )
        status = c.cancel(job_id, grace=2)
    kill = m.request_history[2].json()
    assert kill["bash"] is True and "kill -TERM -- -48213" in kill["command"]
    assert "kill -KILL -- -48213" in kill["command"]
    assert status.done


def test_functional_surface(tmp_path: Path) -> None:
    with requests_mock.Mocker() as m:
        m.post(EXEC, json=body("exec_blocking_ok.json"))
        assert run_command("echo", ["hi"], api_key=SECRET_KEY, host=HOST, project_id=PID).ok
        m.post(EXEC, json=body("exec_async_start.json"))
        job = submit_command("sleep 1", api_key=SECRET_KEY, host=HOST, project_id=PID)
        m.post(EXEC, json=body("exec_async_completed.json"))
        assert wait_for_job(job, api_key=SECRET_KEY, host=HOST).stdout == "i=1\ni=2\ni=3\n"
        m.post(EXEC, json=body("exec_async_cancel.json"))
        assert cancel_job(job, api_key=SECRET_KEY, host=HOST).status == "killed"


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"command": ""}, "command must be a non-empty string"),
        ({"command": 5}, "command must be"),
        ({"command": "a\x00b"}, "NUL"),
        ({"command": "ls", "args": "a b"}, "args must be a list"),
        ({"command": "ls", "args": [1]}, "args[0] must be a string"),
        ({"command": "ls", "timeout": -1}, "timeout must be 0"),
        ({"command": "ls", "timeout": "5"}, "timeout must be a number"),
        ({"command": "ls", "timeout": float("nan")}, "timeout must be 0"),
        ({"command": "ls", "max_output": 0}, "max_output must be a positive"),
        ({"command": "ls", "bash": "yes"}, "bash must be a bool"),
        ({"command": "ls", "env": {"A": 1}}, "env['A'] must be a string"),
        ({"command": "ls", "env": {"A=B": "x"}}, "invalid variable name"),
        ({"command": "ls", "project_id": "nope"}, "not a valid UUID"),
    ],
)
def test_exec_request_validation(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(CocalcValidationError) as info:
        ExecRequest(**kwargs)
    assert fragment in str(info.value)


def test_project_id_is_required_and_nothing_is_sent() -> None:
    with requests_mock.Mocker() as m, CocalcClient(SECRET_KEY, HOST) as c:
        with pytest.raises(CocalcValidationError, match="project_id is required"):
            c.exec("echo")
        with pytest.raises(CocalcValidationError, match="project_id is required"):
            c.job("some-job")
    assert m.call_count == 0


def test_results_and_errors_survive_pickle_and_json() -> None:
    result = CommandResult.from_response(body("exec_async_completed.json"), command="loop")
    assert CommandResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result
    error = CocalcCommandError("x", exit_code=3, stderr="e", result=result)
    clone = pickle.loads(pickle.dumps(error))  # noqa: S301 (our own bytes)
    assert type(clone) is CocalcCommandError and clone.exit_code == 3 and clone.result == result
    assert str(clone) == str(error)
    unknown = pickle.loads(pickle.dumps(CocalcUnknownJobError("gone", job_id="j")))  # noqa: S301
    assert unknown.job_id == "j" and str(unknown) == str(CocalcUnknownJobError("gone", job_id="j"))


def test_a_key_echoed_by_the_server_is_redacted_from_errors() -> None:
    with requests_mock.Mocker() as m, client() as c:
        m.post(EXEC, json={"error": f"user must be signed in, not {SECRET_KEY}"})
        with pytest.raises(CocalcAuthError) as info:
            c.exec("echo")
    assert SECRET_KEY not in str(info.value) and SECRET_KEY not in repr(info.value)
    assert SECRET_KEY not in (info.value.server_message or "")
    assert "***" in str(info.value)


def test_page_links_are_the_project_on_cocalc_and_the_job_on_a_cocalc_tasks_server() -> None:
    started = body("exec_async_start.json")
    with requests_mock.Mocker() as m, client() as c:
        m.post(EXEC, json=started)  # CoCalc: no cocalc-tasks header
        job = c.submit("sleep 1", project_id=PID)
        assert not c.has_job_pages
        assert c.page_url(PID, job.job_id) == f"{HOST}/projects/{PID}"
        assert c.page_url() == f"{HOST}/projects/{PID}"  # the client's own project
    with requests_mock.Mocker() as m, client() as c:
        m.post(EXEC, json=started, headers={"x-cocalc-tasks-replica": "a"})
        job = c.submit("sleep 1", project_id=PID)
        assert c.page_url(PID, job.job_id) == f"{HOST}/projects/{PID}/jobs/{job.job_id}"
        assert c.page_url(PID) == f"{HOST}/projects/{PID}"
