"""The tasks against the local server with real kernels: results, logs, retries, map, async."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from prefect import flow, unmapped
from prefect.context import get_run_context

from cocalc_tasks import CocalcExecutionError, ExecutionResult
from cocalc_tasks.server.local_server import LocalServer
from prefect_tasks import (
    COCALC_CONTENT_HASH,
    CocalcCredentials,
    aexecute_code,
    execute_code,
    list_kernels,
)
from tests.conftest import SECRET_KEY
from tests.prefect.helpers import artifacts, run_logs
from tests.support.flaky_server import Reply, flaky_server

QUOTA = json.dumps(
    {
        "error": "There is too much overall usage of code evaluation right now.  "
        "Please try again later or do this computation in a project."
    }
)
OK = json.dumps({"output": [{"name": "stdout", "text": "5\n"}], "created": None})


def test_result_logs_and_artifact(credentials: CocalcCredentials) -> None:
    @flow
    def f() -> tuple[ExecutionResult, str]:
        result = execute_code(
            credentials,
            "import sys\nprint('\\x1b[1mout\\x1b[0m')\nprint('warn', file=sys.stderr)\n6*7",
            kernel="python3",
            artifact_key="cocalc-test-result",
            no_cache=True,
        )
        return result, str(get_run_context().flow_run.id)

    result, run_id = f()
    assert isinstance(result, ExecutionResult) and result.text == "42"
    logs = run_logs(run_id)
    assert "[stdout] out" in logs and "[stderr] warn" in logs and "[result] 42" in logs
    assert not any("\x1b[" in line for line in logs)
    (artifact,) = artifacts("cocalc-test-result")[:1]
    assert "42" in artifact.data and "warn" in artifact.data


def test_remote_exception_fails_once_with_traceback(credentials: CocalcCredentials) -> None:
    @flow
    def f() -> None:
        execute_code(
            credentials,
            "def g():\n    raise KeyError('missing')\ng()",
            kernel="python3",
            no_cache=True,
        )

    state = f(return_state=True)
    assert state.is_failed()
    with pytest.raises(CocalcExecutionError) as info:
        state.result()
    assert info.value.ename == "KeyError" and "raise KeyError" in info.value.traceback


def test_fail_on_error_false_and_as_dict(credentials: CocalcCredentials) -> None:
    @flow
    def f() -> dict[str, object]:
        return execute_code(credentials, "1/0", kernel="python3", fail_on_error=False, as_dict=True)  # type: ignore[return-value]

    value = f()
    assert value["ok"] is False and SECRET_KEY not in json.dumps(value)


def test_only_transient_errors_are_retried() -> None:
    with flaky_server(Reply(body=QUOTA.encode()), Reply(body=OK.encode())) as (url, script):
        creds = CocalcCredentials(host=url)

        @flow
        def f() -> str:
            return execute_code.with_options(retry_delay_seconds=0)(
                creds, "print(5)", kernel="python3"
            ).stdout

        assert f() == "5\n"
        assert len(script.requests) == 2
    remote_error = json.dumps({"output": [{"ename": "E", "evalue": "x", "traceback": []}]})
    with flaky_server(Reply(body=remote_error.encode())) as (url, script):
        creds = CocalcCredentials(host=url)

        @flow
        def g() -> None:
            execute_code.with_options(retry_delay_seconds=0)(creds, "x", kernel="python3")

        assert g(return_state=True).is_failed()
        assert len(script.requests) == 1


def test_map_and_submit(credentials: CocalcCredentials) -> None:
    @flow
    def f() -> list[str]:
        futures = execute_code.map(
            unmapped(credentials), [f"{i}**2" for i in range(4)], kernel=unmapped("python3")
        )
        single = execute_code.submit(credentials, "print('s')", kernel="python3")
        return [fut.result().text for fut in futures] + [single.result().stdout]

    assert f() == ["0", "1", "4", "9", "s\n"]


def test_async_task(credentials: CocalcCredentials) -> None:
    @flow
    async def f() -> list[str]:
        results = await asyncio.gather(
            *(aexecute_code(credentials, f"{i}+1", kernel="python3") for i in range(3))
        )
        return [r.text for r in results]

    assert asyncio.run(f()) == ["1", "2", "3"]


def test_list_kernels(credentials: CocalcCredentials) -> None:
    @flow
    def f() -> list[str]:
        return list_kernels(credentials)

    assert {"python3", "bash"} <= set(f())


def test_opt_in_content_hash_cache(credentials: CocalcCredentials) -> None:
    cached = execute_code.with_options(cache_policy=COCALC_CONTENT_HASH, persist_result=True)
    code = "import uuid; print(uuid.uuid4())"

    @flow
    def f() -> list[Any]:
        return [
            cached(credentials, code, kernel="python3", return_state=True),
            cached(credentials, code, kernel="python3", return_state=True),
            cached(credentials, code, kernel="python3", as_dict=True, return_state=True),
            cached(credentials, code, kernel="python3", no_cache=True, return_state=True),
            cached(credentials, code, kernel="python3", no_cache=True, return_state=True),
        ]

    first, second, as_dict, fresh1, fresh2 = f()
    assert second.name == "Cached", "the same request must come from Prefect's cache"
    assert second.result().stdout == first.result().stdout
    assert as_dict.name != "Cached", "as_dict is part of the key"
    assert isinstance(as_dict.result(), dict)
    assert "Cached" not in (fresh1.name, fresh2.name), "no_cache=True is never cached"
    assert fresh1.result().stdout != fresh2.result().stdout


def test_async_task_creates_its_artifact(credentials: CocalcCredentials) -> None:
    @flow
    async def f() -> str:
        result = await aexecute_code(
            credentials, "print('art')", kernel="python3", artifact_key="cocalc-async-art"
        )
        return str(result.stdout)

    assert asyncio.run(f()) == "art\n"
    found = artifacts("cocalc-async-art")
    assert found and "art" in found[0].data


def test_a_real_quota_refusal_is_retried_until_the_window_rolls_on(tmp_path: Path) -> None:
    """The local server with a quota of 1 s per 3 s: the second call is refused with CoCalc's
    message (CocalcQuotaError, transient), and the task's retry succeeds once usage ages out."""
    args = ["--kernels", "python3", "--quota-anonymous", "1", "--quota-period", "3"]
    with LocalServer(data_dir=tmp_path / "data", args=args) as server:
        creds = CocalcCredentials(host=server.url)

        @flow
        def f() -> tuple[str, str, Any]:
            first = execute_code(creds, "import time; time.sleep(2.1); print('used')", "python3")
            second = execute_code.with_options(retry_delay_seconds=3.5, retry_jitter_factor=0)(
                creds, "print(6 * 7)", "python3", return_state=True
            )
            return first.stdout, second.result().stdout, second.state_details.task_run_id

        used, answer, task_run_id = f()
    assert (used, answer) == ("used\n", "42\n")
    # The engine reports a task's runs to the API server in the background: wait for the
    # second try to be recorded there, as the UI would show it.
    deadline = time.monotonic() + 15
    while (runs := get_client_sync().read_task_run(task_run_id).run_count) < 2:
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert runs == 2
    # Read after the server stopped: it finishes writing its log before it exits.
    with sqlite3.connect(tmp_path / "data" / "state.sqlite3") as db:
        errors = [
            r[0] for r in db.execute("SELECT error FROM jupyter_api_log ORDER BY id").fetchall()
        ]
    assert errors == [
        None,
        "You may use at most 1 seconds of compute time per 3 seconds. "
        "Sign in to increase your quota.",
        None,
    ]


def get_client_sync() -> Any:
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def test_tasks_are_named_as_users_import_them(credentials: CocalcCredentials) -> None:
    """The UI, the API and ``task_key`` show ``execute_code`` and ``aexecute_code``."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    assert execute_code.name == "execute_code" and aexecute_code.name == "aexecute_code"
    assert execute_code.task_key.startswith("execute_code-")
    assert aexecute_code.task_key.startswith("aexecute_code-")

    @flow
    async def both() -> str:
        ran = execute_code(credentials, "1+1", "python3")
        awaited = await aexecute_code(credentials, "2+2", "python3")
        return f"{ran.text} {awaited.text}"

    state = asyncio.run(both(return_state=True))  # type: ignore[call-overload]
    assert state.result() == "2 4"
    flow_run = state.state_details.flow_run_id
    deadline = time.monotonic() + 30  # task runs reach the API through its events
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run]))
            )
            if len(runs) >= 2 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    keys = sorted(run.task_key.rsplit("-", 1)[0] for run in runs)
    assert keys == ["aexecute_code", "execute_code"], keys
