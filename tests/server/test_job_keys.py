"""Keyed async jobs (CoCalc's rewrite, ``job_key``): a second submit of a running key attaches
to its job instead of starting another; CoCalc master (``--flavor master``) ignores the key."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from cocalc_tasks import CocalcClient, CocalcError
from cocalc_tasks.server.local_server import LocalServer
from tests.conftest import SECRET_KEY
from tests.server.test_flavors import V2_KEY

pytestmark = pytest.mark.server

#: Appends a line to runs.log when it starts, then runs for a while.
COMMAND = "echo started >> runs.log; sleep 3; echo done"


@pytest.fixture(scope="module")
def rewrite() -> Iterator[LocalServer]:
    args = ["--flavor", "cocalc-ai", "--kernels", "python3", "--pool-size", "0"]
    with LocalServer(api_keys=[V2_KEY], args=args) as server:
        yield server


@pytest.fixture(scope="module")
def master() -> Iterator[LocalServer]:
    with LocalServer(api_keys=[SECRET_KEY], args=["--pool-size", "0"]) as server:
        yield server


def _starts(client: CocalcClient) -> int:
    return client.exec("cat runs.log 2>/dev/null || true").stdout.count("started")


def test_a_running_key_attaches_to_its_job(rewrite: LocalServer) -> None:
    project, key = str(uuid.uuid4()), f"airflow:dag:task:run-{uuid.uuid4().hex}:-1"
    with CocalcClient(V2_KEY, rewrite.url, project_id=project) as c:
        first = c.submit(COMMAND, job_key=key)
        second = c.submit(COMMAND, job_key=key)  # a retry after a crash, say
        assert first.job_key == second.job_key == key
        assert second.job_id == first.job_id
        done = c.wait(first)
        assert done.ok and done.stdout == "done\n"
        assert _starts(c) == 1  # the command ran once
        third = c.submit(COMMAND, job_key=key)  # a finished key starts afresh
        assert third.job_id != first.job_id
        c.wait(third)
        assert _starts(c) == 2


def test_the_same_key_with_another_command_is_refused(rewrite: LocalServer) -> None:
    project, key = str(uuid.uuid4()), "k-" + uuid.uuid4().hex
    with CocalcClient(V2_KEY, rewrite.url, project_id=project) as c:
        job = c.submit("sleep 2", job_key=key)
        with pytest.raises(CocalcError, match=f"Async job '{key}' was requested with conflicting"):
            c.submit("sleep 3", job_key=key)
        c.wait(job)


def test_bad_keys_get_the_rewrites_messages(rewrite: LocalServer) -> None:
    with CocalcClient(V2_KEY, rewrite.url, project_id=str(uuid.uuid4())) as c:
        with pytest.raises(CocalcError, match="job_key must not be empty"):
            c.submit("true", job_key="  ")
        with pytest.raises(CocalcError, match="job_key is too long"):
            c.submit("true", job_key="k" * 8193)


def test_concurrent_submits_of_one_key_start_one_job(rewrite: LocalServer) -> None:
    from concurrent.futures import ThreadPoolExecutor

    project, key = str(uuid.uuid4()), "race-" + uuid.uuid4().hex

    def submit(_: int) -> str:
        with CocalcClient(V2_KEY, rewrite.url, project_id=project) as c:
            return c.submit(COMMAND, job_key=key).job_id

    with ThreadPoolExecutor(8) as pool:
        ids = set(pool.map(submit, range(8)))
    assert len(ids) == 1
    with CocalcClient(V2_KEY, rewrite.url, project_id=project) as c:
        c.wait(ids.pop())
        assert _starts(c) == 1


def test_master_ignores_the_key(master: LocalServer) -> None:
    with CocalcClient(SECRET_KEY, master.url, project_id=str(uuid.uuid4())) as c:
        first = c.submit("sleep 1", job_key="same")
        second = c.submit("sleep 1", job_key="same")
        assert first.job_key is None and second.job_key is None  # not echoed: ignored
        assert first.job_id != second.job_id
        for job in (first, second):
            assert c.wait(job).ok  # both ran
