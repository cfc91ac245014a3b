"""Job tasks and the CocalcJob block against the local server's real exec jobs."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import requests
from prefect import flow
from prefect.context import get_run_context

from cocalc_tasks import CocalcClient, CocalcCommandError, CocalcConnectionError, CommandResult
from prefect_tasks import (
    CocalcCredentials,
    CocalcJob,
    arun_command,
    run_command,
)
from prefect_tasks.jobs import JOB_LABEL_PREFIX
from tests.conftest import SECRET_KEY
from tests.prefect.helpers import artifacts, run_logs


@pytest.fixture
def project() -> str:
    return str(uuid.uuid4())


@pytest.fixture
def creds(local_server: str, project: str) -> CocalcCredentials:
    from pydantic import SecretStr

    return CocalcCredentials(api_key=SecretStr(SECRET_KEY), host=local_server, project_id=project)


@pytest.fixture
def client(local_server: str, project: str) -> CocalcClient:
    return CocalcClient(api_key=SECRET_KEY, host=local_server, project_id=project)


def starts(client: CocalcClient) -> int:
    return client.exec("cat runs.log 2>/dev/null || true").stdout.count("start")


def flow_labels(flow_run_id: str) -> dict[str, Any]:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as api:
        return dict(api.read_flow_run(uuid.UUID(flow_run_id)).labels or {})


def test_run_command_streams_returns_and_reports(
    creds: CocalcCredentials, client: CocalcClient
) -> None:
    @flow
    def f() -> tuple[CommandResult, str]:
        result = run_command(
            creds,
            "for i in 1 2 3; do echo line $i; sleep 0.3; done; printf '\\033[1mbold\\033[0m\\n' >&2",
            poll_interval=0.2,
            artifact_key="cocalc-job-test",
        )
        return result, str(get_run_context().flow_run.id)

    result, run_id = f()
    assert isinstance(result, CommandResult) and result.ok
    assert result.stdout == "line 1\nline 2\nline 3\n" and result.job_id
    logs = run_logs(run_id)
    streamed = [line for line in logs if line.startswith("[std")]
    assert streamed == ["[stdout] line 1", "[stdout] line 2", "[stdout] line 3", "[stderr] bold"]
    assert any(f"job {result.job_id} completed" in line for line in logs)
    (artifact,) = artifacts("cocalc-job-test")[:1]
    assert "| exit code | 0 |" in artifact.data and result.job_id in artifact.data
    assert "## CPU and memory" in artifact.data or not result.stats
    # The artifact links the job's page on this server, which shows the job.
    page = f"{client.host}/projects/{client.project_id}/jobs/{result.job_id}"
    assert f"| page | [{page}]({page}) |" in artifact.data
    shown = requests.get(page, auth=(SECRET_KEY, ""), timeout=30)
    assert shown.status_code == 200 and "line 3" in shown.text
    assert flow_labels(run_id)[JOB_LABEL_PREFIX + result.job_id] == "done"
    assert not any(SECRET_KEY in line for line in logs) and SECRET_KEY not in artifact.data


def test_a_long_job_has_its_samples_in_the_artifact(creds: CocalcCredentials) -> None:
    @flow
    def f() -> CommandResult:
        code = "import time\nend = time.time() + 2.5\nwhile time.time() < end: pass\n"
        return run_command(creds, code=code, artifact_key="cocalc-job-samples", poll_interval=0.5)

    result = f()
    assert result.stats and max(s.cpu_pct for s in result.stats) > 10
    (artifact,) = artifacts("cocalc-job-samples")[:1]
    assert "| time (s) | CPU % | CPU s | memory (MiB) |" in artifact.data


def test_a_nonzero_exit_fails_once_and_as_dict(creds: CocalcCredentials, client: Any) -> None:
    @flow
    def f() -> None:
        run_command(creds, "echo start >> runs.log; echo bad >&2; exit 5")

    state = f(return_state=True)
    assert state.is_failed()
    with pytest.raises(CocalcCommandError, match="exited with code 5: bad"):
        state.result()
    assert starts(client) == 1  # never retried

    @flow
    def g() -> dict[str, Any]:
        return run_command(creds, "exit 5", fail_on_nonzero=False, as_dict=True)  # type: ignore[return-value]

    summary = g()
    assert (summary["exit_code"], summary["ok"], summary["status"]) == (5, False, "completed")


def test_a_retry_reattaches_to_the_job_of_the_earlier_try(
    creds: CocalcCredentials, client: CocalcClient
) -> None:
    """The first try loses the server after submitting; the retry waits for the same job."""
    real_wait = CocalcClient.wait
    calls: list[int] = []

    def flaky_wait(self: CocalcClient, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise CocalcConnectionError("connection reset (injected)")
        return real_wait(self, *args, **kwargs)

    @flow
    def f() -> CommandResult:
        task = run_command.with_options(retry_delay_seconds=0)
        return task(creds, "echo start >> runs.log; sleep 1; echo finished", poll_interval=0.2)

    with mock.patch.object(CocalcClient, "wait", flaky_wait):
        result = f()
    assert len(calls) == 2 and result.stdout == "finished\n"
    assert starts(client) == 1  # one job, two tries


def test_the_job_block_triggers_waits_and_fetches(
    creds: CocalcCredentials, client: CocalcClient
) -> None:
    job = CocalcJob(credentials=creds, code="print('hi')\n6 * 7", poll_interval=0.2)

    @flow
    async def f() -> tuple[CommandResult, str]:
        run = await job.trigger()
        await run.wait_for_completion()
        return await run.fetch_result(), str(get_run_context().flow_run.id)

    result, run_id = asyncio.run(f())
    assert result.stdout == "hi\n42\n" and result.command == "python3 script (2 lines)"
    assert "[stdout] hi" in run_logs(run_id)
    failing = CocalcJob(credentials=creds, command="exit 2")

    async def fail() -> None:
        run = await failing.trigger()
        await run.wait_for_completion()
        await run.fetch_result()

    with pytest.raises(CocalcCommandError):
        asyncio.run(fail())
    with pytest.raises(ValueError, match="exactly one of command= or code="):
        CocalcJob(credentials=creds).request()


def test_the_job_block_saves_without_its_key(creds: CocalcCredentials) -> None:
    name = f"job-{uuid.uuid4().hex[:8]}"
    CocalcJob(credentials=creds, command="true").save(name)
    loaded = CocalcJob.load(name)
    assert isinstance(loaded, CocalcJob) and loaded.command == "true"
    assert SECRET_KEY not in repr(loaded) and SECRET_KEY not in str(loaded.model_dump())


def test_an_async_task_timeout_cancels_its_job(
    creds: CocalcCredentials, client: CocalcClient
) -> None:
    @flow
    async def f() -> str:
        task = arun_command.with_options(timeout_seconds=3, retries=0)
        await task(creds, "echo start >> runs.log; sleep 60", poll_interval=0.2)
        return "unreachable"

    state = asyncio.run(f(return_state=True))  # type: ignore[call-overload]
    assert not state.is_completed()
    job_ids = [
        key[len(JOB_LABEL_PREFIX) :]
        for key in flow_labels(str(state.state_details.flow_run_id))
        if key.startswith(JOB_LABEL_PREFIX)
    ]
    assert len(job_ids) == 1 and starts(client) == 1
    assert client.job(job_ids[0]).status == "killed"


def test_a_sync_task_timeout_cancels_its_job(
    creds: CocalcCredentials, client: CocalcClient
) -> None:
    """``timeout_seconds`` on the sync task: Prefect interrupts the waiting thread with its
    cancellation, and the wait cancels the job on the way out."""

    @flow
    def f() -> str:
        task = run_command.with_options(timeout_seconds=3, retries=0)
        task(creds, "echo start >> runs.log; sleep 60", poll_interval=0.2)
        return "unreachable"

    started = time.monotonic()
    state = f(return_state=True)
    assert not state.is_completed() and time.monotonic() - started < 30
    job_ids = [
        key[len(JOB_LABEL_PREFIX) :]
        for key in flow_labels(str(state.state_details.flow_run_id))
        if key.startswith(JOB_LABEL_PREFIX)
    ]
    assert len(job_ids) == 1 and starts(client) == 1
    assert client.job(job_ids[0]).status == "killed"


def test_arun_command_streams_and_reports(creds: CocalcCredentials) -> None:
    @flow
    async def f() -> tuple[CommandResult, str]:
        result = await arun_command(
            creds,
            code="print('a')\nprint('b')\n2 ** 10",
            artifact_key="cocalc-ajob",
            poll_interval=0.2,
        )
        return result, str(get_run_context().flow_run.id)  # type: ignore[return-value]

    result, run_id = asyncio.run(f())
    assert result.ok and result.stdout == "a\nb\n1024\n"
    assert [line for line in run_logs(run_id) if line.startswith("[std")] == [
        "[stdout] a",
        "[stdout] b",
        "[stdout] 1024",
    ]
    (artifact,) = artifacts("cocalc-ajob")[:1]
    assert "| exit code | 0 |" in artifact.data and "python3 script (3 lines)" in artifact.data


def test_a_retry_in_a_new_process_attaches_through_the_job_key(tmp_path: Path) -> None:
    """What a task run remembers of its job dies with its process; the job key does not: a
    second submit from the same task run (its memory gone) gets the running job back, where
    the server honours keys (CoCalc's rewrite)."""
    from prefect import task
    from pydantic import SecretStr

    from cocalc_tasks import ExecRequest
    from cocalc_tasks.server.local_server import LocalServer
    from prefect_tasks import job_tasks
    from tests.server.test_flavors import V2_KEY

    args = ["--flavor", "cocalc-ai", "--pool-size", "0"]
    with LocalServer(data_dir=tmp_path, api_keys=[V2_KEY], args=args) as server:
        credentials = CocalcCredentials(api_key=SecretStr(V2_KEY), host=server.url)
        request = ExecRequest.build("sleep 2", project_id=str(uuid.UUID(int=9)))

        @task
        def submit_twice() -> list[str]:
            first = job_tasks._start(credentials, request)
            job_tasks._STARTED.clear()  # as in a new process
            second = job_tasks._start(credentials, request)
            assert first.job_key is not None and first.job_key.startswith("prefect/")
            return [first.job_id, second.job_id]

        @flow
        def twice() -> list[str]:
            return submit_twice()

        first, second = twice()
    assert first == second


def test_a_later_try_in_a_new_process_attaches_through_the_flow_run(
    creds: CocalcCredentials, client: CocalcClient
) -> None:
    """Without job keys (CoCalc master's flavour, this server), a try that lost its memory of
    the job (a new process) finds it in the flow run's labels, under its task call."""
    from prefect import task

    from cocalc_tasks import ExecRequest
    from prefect_tasks import job_tasks
    from prefect_tasks.jobs import TASK_LABEL_PREFIX

    request = ExecRequest.build("echo start >> runs.log; sleep 2", project_id=client.project_id)

    @task
    def submit_twice() -> list[str]:
        first = job_tasks._start(creds, request)
        job_tasks._STARTED.clear()  # as in a new process
        second = job_tasks._start(creds, request)
        return [first.job_id, second.job_id]

    @flow
    def twice() -> tuple[list[str], str]:
        return submit_twice(), str(get_run_context().flow_run.id)  # type: ignore[union-attr]

    (first, second), run_id = twice()
    assert first == second and starts(client) == 1
    (label,) = [v for k, v in flow_labels(run_id).items() if k.startswith(TASK_LABEL_PREFIX)]
    assert label == f"{first} {client.project_id}"


def test_submit_then_wait_composes_as_run_command(
    creds: CocalcCredentials, client: CocalcClient
) -> None:
    """Fire and forget, then wait: ``submit_command`` returns the job at once, other work goes
    on, and ``wait_for_job`` (given the Job, a mapping, or an id) returns what ``run_command``
    would, and judges a failure the same way."""
    from prefect_tasks import submit_command, wait_for_job

    @flow
    def pipeline() -> tuple[CommandResult, dict[str, Any], str]:
        job = submit_command(creds, "echo start >> runs.log; sleep 3; echo done")
        state = client.job(job).status  # submit_command returned while the job runs
        side = run_command(creds, "echo meanwhile")  # other work goes on meanwhile
        assert side.stdout == "meanwhile\n"
        result = wait_for_job(creds, job, poll_interval=0.2)
        again = wait_for_job(creds, job.job_id, as_dict=True)  # by id, with the block's project
        return result, again, state

    result, again, state = pipeline()
    assert state == "running"
    assert result.ok and result.stdout == "done\n" and again["stdout"] == "done\n"
    assert again["job_id"] == result.job_id and starts(client) == 1

    @flow
    def failing() -> None:
        job = submit_command(creds, "echo oops >&2; exit 3")
        wait_for_job(creds, {"job_id": job.job_id, "project_id": job.project_id})

    with pytest.raises(CocalcCommandError) as raised:
        failing()
    assert raised.value.exit_code == 3 and "oops" in raised.value.stderr
