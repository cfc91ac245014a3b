"""CocalcRunOperator and CocalcJobTrigger against the local server's real exec jobs.

The operator is driven directly (``execute``, ``execute_complete``, ``on_kill``) with a task
state store like Airflow's; the trigger's ``run`` and ``on_kill`` run in an event loop. Whole
DAG runs (``dag.test()``, with the trigger running) are in test_job_dags.py.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import requests
from airflow.providers.common.compat.sdk import (
    AirflowException,
    AirflowFailException,
    AirflowTaskTimeout,
    TaskDeferred,
)

from airflow_provider.operators.cocalc import PROJECT_URL_KEY
from airflow_provider.operators.job import JOB_ID_KEY, CocalcRunOperator, wait_deadline
from airflow_provider.triggers.cocalc import CocalcJobTrigger
from cocalc_tasks import CocalcClient
from tests.airflow.conftest import resumable
from tests.conftest import SECRET_KEY

RESUMABLE = resumable()


class StateStore:
    """Airflow's task state store as the mixin uses it: ``get`` and ``set`` of JSON values."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def get(self, key: str) -> Any:
        value = self.values.get(key)
        return None if value is None else json.loads(value)

    def set(self, key: str, value: Any) -> None:
        self.values[key] = json.dumps(value)


def context(store: StateStore | None = None) -> dict[str, Any]:
    ti = mock.MagicMock(dag_id="d", run_id="r", task_id="t", map_index=-1, stats_tags={})
    return {"ti": ti, "task_state_store": store if store is not None else StateStore()}


@pytest.fixture
def project() -> str:
    return str(uuid.uuid4())


@pytest.fixture
def client(cocalc_conn: str, project: str) -> CocalcClient:
    return CocalcClient(api_key=SECRET_KEY, host=cocalc_conn, project_id=project)


def runs(client: CocalcClient) -> list[str]:
    """Lines the test commands append to ``runs.log`` in the project: one per start."""
    return client.exec("cat runs.log 2>/dev/null || true").stdout.split()


def pushed(ctx: dict[str, Any], key: str) -> list[Any]:
    return [c.kwargs["value"] for c in ctx["ti"].xcom_push.call_args_list if c.kwargs["key"] == key]


def streamed(text: str) -> list[str]:
    """The ``[stdout]``/``[stderr]`` lines of a task log, in order: in Airflow 3.1+'s layout
    (``... [info ] [stdout] line   [logger] ...``) or 3.0's (``{file:n} INFO - [stdout] line``)."""
    return re.findall(r"(?:\]|-) (\[std(?:out|err)\] .*?)(?:[ \t]+\[[^\n]*)?$", text, re.M)


def test_a_job_streams_its_lines_and_returns_a_compact_summary(
    client: CocalcClient, project: str, capfd: pytest.CaptureFixture[str]
) -> None:
    op = CocalcRunOperator(
        task_id="t",
        command="for i in 1 2 3; do echo line $i; sleep 0.4; done; echo oops >&2",
        project_id=project,
        deferrable=False,
        poll_interval=0.2,
    )
    ctx = context()
    value = op.execute(ctx)  # type: ignore[arg-type]
    log = capfd.readouterr().out
    assert streamed(log) == [
        "[stdout] line 1",
        "[stdout] line 2",
        "[stdout] line 3",
        "[stderr] oops",
    ]
    assert value["exit_code"] == 0 and value["ok"] and value["status"] == "completed"
    assert value["stdout"] == "line 1\nline 2\nline 3\n" and value["stderr"] == "oops\n"
    assert pushed(ctx, JOB_ID_KEY) == [value["job_id"]]
    # The extra link: the project first (before any job exists), then the job's page, which
    # the local server serves.
    links = pushed(ctx, PROJECT_URL_KEY)
    job_page = f"{client.host}/projects/{project}/jobs/{value['job_id']}"
    assert links == [f"{client.host}/projects/{project}", job_page]
    page = requests.get(job_page, auth=(SECRET_KEY, ""), timeout=30)
    assert page.status_code == 200 and "line 3" in page.text and "completed" in page.text
    assert value["elapsed"] >= 1.0 and value["stats"]["samples"] >= 0
    json.dumps(value)  # XCom-safe
    assert SECRET_KEY not in json.dumps(value) and SECRET_KEY not in log
    stored = ctx["task_state_store"].get(op.external_id_key)
    expected = {"job_id": value["job_id"], "project_id": project} if RESUMABLE else None
    assert stored == expected


def test_code_runs_through_run_script_and_code_file_is_not_rendered(
    client: CocalcClient, project: str, tmp_path: Path
) -> None:
    script = tmp_path / "job.py"
    script.write_text("x = {'a': 1}\nprint(f\"{{x['a']}}\")\nx['a'] + 41\n")
    op = CocalcRunOperator(
        task_id="t", code_file=str(script), project_id=project, deferrable=False, poll_interval=0.2
    )
    op.render_template_fields({"params": {}})  # type: ignore[arg-type]
    value = op.execute(context())  # type: ignore[arg-type]
    assert value["stdout"] == "{x['a']}\n42\n"
    assert value["command"] == "python3 script (3 lines)"


def test_templated_fields_render(project: str) -> None:
    op = CocalcRunOperator(
        task_id="t",
        command="echo {{ params.word }}",
        args=None,
        project_id="{{ params.p }}",
        env={"N": "{{ params.n }}"},
        path="{{ params.word }}",
    )
    op.render_template_fields({"params": {"word": "hi", "p": project, "n": 3}})  # type: ignore[arg-type]
    assert (op.command, op.project_id, op.env, op.path) == ("echo hi", project, {"N": "3"}, "hi")


def test_sources_are_checked() -> None:
    with pytest.raises(ValueError, match="exactly one of command=, code= or code_file="):
        CocalcRunOperator(task_id="a", command="true", code="1")
    with pytest.raises(ValueError, match="got none"):
        CocalcRunOperator(task_id="b")
    with pytest.raises(ValueError, match="args= goes with command="):
        CocalcRunOperator(task_id="c", code="1", args=["x"])


def test_a_nonzero_exit_fails_without_retries_unless_asked(project: str, client: Any) -> None:
    op = CocalcRunOperator(
        task_id="t",
        command="echo out; echo bad >&2; exit 3",
        project_id=project,
        deferrable=False,
        poll_interval=0.2,
    )
    with pytest.raises(AirflowFailException, match="exited with code 3: bad"):
        op.execute(context())  # type: ignore[arg-type]
    op.fail_on_nonzero = False
    value = op.execute(context())  # type: ignore[arg-type]
    assert (value["exit_code"], value["ok"], value["stdout"]) == (3, False, "out\n")


def test_transient_errors_stay_retryable(monkeypatch: pytest.MonkeyPatch, project: str) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_COCALC_DEFAULT",
        json.dumps({"conn_type": "cocalc", "host": "http://127.0.0.1:9", "password": SECRET_KEY}),
    )
    op = CocalcRunOperator(task_id="t", command="true", project_id=project, deferrable=False)
    with pytest.raises(Exception) as raised:
        op.execute(context())  # type: ignore[arg-type]
    assert not isinstance(raised.value, AirflowFailException)
    assert getattr(raised.value, "transient", False) is True
    assert raised.value.__cause__ is not raised.value


@pytest.mark.parametrize(
    ("prior", "submits", "expected"),
    [
        ("running", 0, "attached"),  # still running: wait for it
        ("completed", 0, "first"),  # ran to its end: its result stands
        ("killed", 1, "second"),  # cancelled: a new job
        ("unknown", 1, "second"),  # forgotten by the server: a new job
    ],
)
def test_the_next_try_reattaches_reuses_or_resubmits(
    client: CocalcClient, project: str, prior: str, submits: int, expected: str
) -> None:
    store = StateStore()
    if prior == "unknown":
        store.set("cocalc_job", {"job_id": str(uuid.uuid4()), "project_id": project})
    else:
        script = (
            "echo start >> runs.log; sleep 1.5; echo first"
            if prior == "running"
            else (
                "echo start >> runs.log; echo first"
                if prior == "completed"
                else "echo start >> runs.log; sleep 60"
            )
        )
        job = client.submit(script, timeout=120)
        if prior == "running":
            script = "echo attached"
        if prior == "completed":
            client.wait(job)
        if prior == "killed":
            client.cancel(job)
        store.set("cocalc_job", {"job_id": job.job_id, "project_id": project})
    op = CocalcRunOperator(
        task_id="t",
        command="echo start >> runs.log; echo second",
        project_id=project,
        deferrable=False,
        poll_interval=0.2,
    )
    if not RESUMABLE:  # nothing is kept across tries: a new job, whatever came before
        submits, expected = 1, "second"
    before = len(runs(client))
    ctx = context(store)
    value = op.execute(ctx)  # type: ignore[arg-type]
    assert len(runs(client)) - before == submits
    # Submitted or re-attached, the link ends on the job this try waited for.
    assert pushed(ctx, PROJECT_URL_KEY)[-1] == (
        f"{client.host}/projects/{project}/jobs/{value['job_id']}"
    )
    want = {"attached": "first", "first": "first", "second": "second"}[expected]
    assert value["stdout"].split() == [want]


def test_deferrable_submits_then_defers_with_only_ids(client: CocalcClient, project: str) -> None:
    op = CocalcRunOperator(
        task_id="t", command="sleep 30", project_id=project, deferrable=True, timeout=100
    )
    ctx = context()
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(ctx)  # type: ignore[arg-type]
    trigger = deferred.value.trigger
    assert deferred.value.method_name == "execute_complete"
    path, kwargs = trigger.serialize()
    assert path == "airflow_provider.triggers.cocalc.CocalcJobTrigger"
    assert set(kwargs) == {
        "job_id",
        "project_id",
        "cocalc_conn_id",
        "poll_interval",
        "deadline",
        "reason",
        "notebook",
    }
    assert kwargs["reason"] is None  # no execution_timeout: the job's own timeout bounds the wait
    assert kwargs["job_id"] == pushed(ctx, JOB_ID_KEY)[0] and kwargs["project_id"] == project
    assert 100 < kwargs["deadline"] - time.time() <= 100 + 120
    assert SECRET_KEY not in json.dumps(kwargs)
    assert client.job(kwargs["job_id"]).status == "running"
    # A second try while the job runs defers to the same job: nothing new is submitted
    # (Airflow 3.3+; below it the second try submits a job of its own).
    with pytest.raises(TaskDeferred) as again:
        op.execute(context(ctx["task_state_store"]))  # type: ignore[arg-type]
    second = again.value.trigger.serialize()[1]["job_id"]
    assert (second == kwargs["job_id"]) is RESUMABLE
    for job_id in {kwargs["job_id"], second}:
        client.cancel(job_id)


def drive(trigger: CocalcJobTrigger) -> tuple[list[dict[str, Any]], set[int], int]:
    """Run the trigger to its event; return the events, the threads that made HTTP calls, and
    the event loop's thread."""
    threads: set[int] = set()
    original = CocalcClient.job

    def job(self: CocalcClient, *args: Any, **kwargs: Any) -> Any:
        threads.add(threading.get_ident())
        return original(self, *args, **kwargs)

    async def collect() -> list[dict[str, Any]]:
        return [event.payload async for event in trigger.run()]

    with mock.patch.object(CocalcClient, "job", job):
        events = asyncio.run(collect())
    return events, threads, threading.get_ident()


def test_the_trigger_streams_and_fires_once_off_the_event_loop(
    client: CocalcClient, project: str, capfd: pytest.CaptureFixture[str]
) -> None:
    job = client.submit("echo one; sleep 0.5; printf 'two\\033[0m\\n'; exit 4")
    trigger = CocalcJobTrigger(job_id=job.job_id, project_id=project, poll_interval=0.2)
    events, threads, loop_thread = drive(trigger)
    assert events == [
        {"status": "done", "job_id": job.job_id, "project_id": project, "job_status": "completed"}
    ]
    assert threads and loop_thread not in threads  # HTTP never ran on the loop's thread
    assert streamed(capfd.readouterr().out) == ["[stdout] one", "[stdout] two"]


def test_the_trigger_reports_deadline_and_unknown_jobs(client: CocalcClient, project: str) -> None:
    job = client.submit("sleep 30")
    events, _, _ = drive(
        CocalcJobTrigger(
            job_id=job.job_id, project_id=project, poll_interval=0.1, deadline=time.time() + 0.5
        )
    )
    assert [e["status"] for e in events] == ["timeout"]
    assert client.job(job).status == "running"  # the deadline alone never kills
    client.cancel(job)
    events, _, _ = drive(
        CocalcJobTrigger(job_id=str(uuid.uuid4()), project_id=project, poll_interval=0.1)
    )
    assert len(events) == 1 and events[0]["status"] == "error"
    assert events[0]["transient"] is False and "job" in events[0]["message"]


def test_the_trigger_cancels_the_job_when_the_task_is_killed(
    client: CocalcClient, project: str
) -> None:
    job = client.submit("sleep 60")
    trigger = CocalcJobTrigger(job_id=job.job_id, project_id=project)
    asyncio.run(trigger.on_kill())
    assert client.job(job).status == "killed"


def test_execute_complete_judges_the_event(client: CocalcClient, project: str) -> None:
    op = CocalcRunOperator(task_id="t", command="x", project_id=project, poll_interval=0.2)
    done = client.submit("echo ok")
    client.wait(done)
    value = op.execute_complete(
        context(), {"status": "done", "job_id": done.job_id, "project_id": project}
    )  # type: ignore[arg-type]
    assert value["stdout"] == "ok\n" and value["job_id"] == done.job_id
    slow = client.submit("sleep 60")
    with pytest.raises(AirflowException, match="deadline") as raised:
        op.execute_complete(
            context(),  # type: ignore[arg-type]
            {
                "status": "timeout",
                "job_id": slow.job_id,
                "project_id": project,
                "message": "job outlived its deadline",
            },
        )
    assert not isinstance(raised.value, AirflowFailException)  # retried, and re-attached
    assert client.job(slow).status == "killed"
    event = {"status": "error", "job_id": slow.job_id, "project_id": project, "message": "m"}
    with pytest.raises(AirflowException) as transient:
        op.execute_complete(context(), {**event, "transient": True})  # type: ignore[arg-type]
    assert not isinstance(transient.value, AirflowFailException)
    with pytest.raises(AirflowFailException):
        op.execute_complete(context(), {**event, "transient": False})  # type: ignore[arg-type]


def test_on_kill_cancels_the_running_job(client: CocalcClient, project: str) -> None:
    op = CocalcRunOperator(
        task_id="t", command="sleep 60", project_id=project, deferrable=False, poll_interval=0.2
    )
    ctx = context()
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            op.execute(ctx)  # type: ignore[arg-type]
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    for _ in range(100):
        if pushed(ctx, JOB_ID_KEY):
            break
        time.sleep(0.1)
    (job_id,) = pushed(ctx, JOB_ID_KEY)
    op.on_kill()
    worker.join(30)
    assert not worker.is_alive()
    assert client.job(job_id).status == "killed"
    assert isinstance(outcome[0], AirflowFailException) and "cancelled" in str(outcome[0])


def test_a_resubmit_of_the_same_task_instance_attaches_to_its_job(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A worker that died between submitting and recording the job id: the retry's submit
    carries the same job_key, so a server that honours keys (CoCalc's rewrite) returns the
    running job instead of starting a second one."""

    from airflow_provider.operators.job import CocalcRunOperator
    from cocalc_tasks.server.local_server import LocalServer
    from cocalc_tasks.testing.airflow import connection_env
    from tests.server.test_flavors import V2_KEY

    args = ["--flavor", "cocalc-ai", "--pool-size", "0"]
    with LocalServer(data_dir=tmp_path, api_keys=[V2_KEY], args=args) as server:
        for name, value in connection_env(server.url, V2_KEY).items():
            monkeypatch.setenv(name, value)
        ti = mock.MagicMock(dag_id="d", task_id="t", run_id="manual__1", map_index=-1)
        ids = []
        for _ in range(2):  # two tries, each a fresh operator in a fresh worker
            op = CocalcRunOperator(
                task_id="t", command="sleep 2", project_id=str(uuid.UUID(int=7)), deferrable=False
            )
            ids.append(op.submit_job({"ti": ti})["job_id"])  # type: ignore[arg-type]
        assert ids[0] == ids[1]
        ti.map_index = 0  # another mapped instance: its own job
        other = CocalcRunOperator(
            task_id="t", command="sleep 2", project_id=str(uuid.UUID(int=7)), deferrable=False
        ).submit_job({"ti": ti})  # type: ignore[arg-type]
        assert other["job_id"] != ids[0]


def test_execution_timeout_bounds_a_deferred_wait_and_cancels_the_job(
    client: CocalcClient, project: str
) -> None:
    """Airflow applies ``execution_timeout`` only while a task runs on a worker: the trigger
    gets it as its deadline, and its event cancels the job and fails the try as a timeout."""
    op = CocalcRunOperator(
        task_id="t",
        command="sleep 60",
        project_id=project,
        deferrable=True,
        timeout=3600,
        poll_interval=0.2,
        execution_timeout=timedelta(seconds=2),
    )
    ctx = context()
    ctx["ti"].start_date = datetime.now(UTC)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(ctx)  # type: ignore[arg-type]
    kwargs = deferred.value.trigger.serialize()[1]
    assert kwargs["reason"] == "execution_timeout"
    assert abs(kwargs["deadline"] - (ctx["ti"].start_date.timestamp() + 2)) < 0.01
    # Airflow's own trigger timeout only backs the trigger up (no triggerer running it).
    assert deferred.value.timeout.total_seconds() > 2 + 60
    events, _, _ = drive(CocalcJobTrigger(**kwargs))
    assert [(e["status"], e["reason"]) for e in events] == [("timeout", "execution_timeout")]
    with pytest.raises(AirflowTaskTimeout, match="execution_timeout passed"):
        op.execute_complete(context(), events[0])  # type: ignore[arg-type]
    assert client.job(kwargs["job_id"]).status == "killed"


def test_a_job_timeout_sooner_than_execution_timeout_stays_the_deadline(project: str) -> None:
    op = CocalcRunOperator(
        task_id="t",
        command="x",
        project_id=project,
        timeout=10,
        execution_timeout=timedelta(hours=1),
    )
    ctx = context()
    ctx["ti"].start_date = datetime.now(UTC)
    deadline, reason = wait_deadline(op, ctx, op.timeout)  # type: ignore[arg-type]
    assert reason is None and deadline is not None and deadline - time.time() < 10 + 121


def test_airflow_failing_the_deferral_itself_cancels_the_job(
    client: CocalcClient, project: str
) -> None:
    """No triggerer fired in time, so the scheduler resumes the task only to fail it
    (``__fail__``): the job is cancelled on the way, then Airflow's error raised."""
    job = client.submit("sleep 60")
    op = CocalcRunOperator(task_id="t", command="sleep 60", project_id=project)
    ctx = context()
    ctx["ti"].xcom_pull.return_value = job.job_id
    with pytest.raises(Exception) as raised:
        op.resume_execution("__fail__", {"error": "Trigger timeout"}, ctx)  # type: ignore[arg-type]
    assert type(raised.value).__name__ == "TaskDeferralTimeout"
    assert client.job(job).status == "killed"
