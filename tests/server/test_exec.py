"""``/api/v2/exec`` on the real local server: CoCalc master's bodies, process groups, jobs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests
import requests_mock

from cocalc_tasks import CocalcClient, CocalcCommandError, CocalcTimeoutError
from cocalc_tasks.server.local_server import LocalServer
from tests.conftest import SECRET_KEY
from tests.server.conftest import OTHER_PROJECT, PROJECT_ID, PROJECT_KEY
from tests.support.procs import all_gone

pytestmark = pytest.mark.server

FIXTURES = Path(__file__).parents[1] / "fixtures" / "cocalc-exec"
HUB_TIMEOUT = 3.0


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


@pytest.fixture(scope="module")
def exec_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    srv = LocalServer(
        data_dir=tmp_path_factory.mktemp("exec-server"),
        api_keys=[SECRET_KEY],
        project_keys={PROJECT_KEY: PROJECT_ID},
        args=["--pool-size", "1", "--hub-timeout", str(HUB_TIMEOUT)],
        env={"LC_ALL": "C", "LANG": "C"},
    ).start()
    yield srv
    srv.stop()


@pytest.fixture
def c(exec_server: LocalServer) -> Iterator[CocalcClient]:
    with exec_server.client(project_id=PROJECT_ID, timeout=(5, 60)) as client:
        yield client


def post(server: LocalServer, body: dict[str, Any], key: str | None = SECRET_KEY) -> Any:
    auth = (key, "") if key else None
    response = requests.post(server.url + "/api/v2/exec", json=body, auth=auth, timeout=60)
    assert response.status_code == 200
    return response.json()


# -- CoCalc master's bodies, replayed from the fixtures -------------------------------------
@pytest.mark.parametrize(
    "name", ["exec_blocking_ok.json", "exec_blocking_nonzero_err.json", "exec_max_output.json"]
)
def test_blocking_fixture_bodies_are_reproduced(exec_server: LocalServer, name: str) -> None:
    data = fixture(name)
    assert post(exec_server, data["request"]["body"]) == data["response"]["body"]


def test_timeout_fixture_message(exec_server: LocalServer) -> None:
    data = fixture("exec_timeout.json")
    answer = post(exec_server, data["request"]["body"])
    pattern = re.escape(data["response"]["body"]["error"]).replace("k3J9Qz", r"\w+")
    assert re.fullmatch(pattern.replace(r"/tmp/", r"/.+/"), answer["error"]), answer


def test_not_collaborator_fixture(exec_server: LocalServer) -> None:
    data = fixture("exec_not_collaborator.json")
    answer = post(exec_server, data["request"]["body"], key=PROJECT_KEY)
    assert answer == data["response"]["body"]


def test_async_fixture_sequence(exec_server: LocalServer) -> None:
    start = fixture("exec_async_start.json")
    started = post(exec_server, start["request"]["body"])
    expected = start["response"]["body"]
    assert list(started) == list(expected)
    assert {k: started[k] for k in ("stdout", "stderr", "exit_code", "type", "status")} == {
        k: expected[k] for k in ("stdout", "stderr", "exit_code", "type", "status")
    }
    job_id = started["job_id"]
    time.sleep(1.5)
    running = post(exec_server, {"project_id": PROJECT_ID, "async_get": job_id})
    assert running["status"] == "running" and "elapsed_s" not in running
    assert running["stdout"] in ("i=1\n", "i=1\ni=2\n") and list(running) == list(expected)
    done = post(
        exec_server,
        {"project_id": PROJECT_ID, "async_get": job_id, "async_stats": True, "async_await": True},
    )
    completed = fixture("exec_async_completed.json")["response"]["body"]
    assert list(done) == list(completed)
    assert done["stdout"] == completed["stdout"] and done["status"] == "completed"
    assert 2.9 < done["elapsed_s"] < 4 and set(done["stats"][0]) == set(completed["stats"][0])


def test_async_error_fixture_master_semantics(exec_server: LocalServer) -> None:
    job = post(
        exec_server,
        {"project_id": PROJECT_ID, "command": ">&2 echo baz; exit 3", "async_call": True},
    )
    record = post(
        exec_server, {"project_id": PROJECT_ID, "async_get": job["job_id"], "async_await": True}
    )
    expected = fixture("exec_async_error.json")["response"]["body"]
    assert {k: record[k] for k in ("stdout", "stderr", "exit_code", "status")} == {
        k: expected[k] for k in ("stdout", "stderr", "exit_code", "status")
    }


def test_unknown_job_and_other_projects_and_anonymous_are_refused(
    exec_server: LocalServer,
) -> None:
    unknown = fixture("exec_async_unknown_job.json")
    assert post(exec_server, unknown["request"]["body"]) == unknown["response"]["body"]
    job = post(exec_server, {"project_id": PROJECT_ID, "command": "sleep 5", "async_call": True})
    # the project key of PROJECT_ID asking through another project
    refused = post(
        exec_server, {"project_id": OTHER_PROJECT, "async_get": job["job_id"]}, key=PROJECT_KEY
    )
    assert refused == {"error": "user must be a collaborator on the project"}
    # an account key asking in the wrong project: the job is not there
    elsewhere = post(exec_server, {"project_id": OTHER_PROJECT, "async_get": job["job_id"]})
    assert elsewhere["error"].endswith(f"Error: Async operation '{job['job_id']}' does not exist.")
    assert post(exec_server, {"project_id": PROJECT_ID, "command": "id"}, key=None) == {
        "error": "must be signed in"
    }
    post(exec_server, {"project_id": PROJECT_ID, "async_cancel": job["job_id"]})


# -- the engine's rules ----------------------------------------------------------------------
def test_bash_mode_ulimit_stdin_env_and_home(c: CocalcClient, exec_server: LocalServer) -> None:
    assert c.exec("ulimit -t", timeout=7).stdout == "7\n"
    assert c.exec("ulimit -t", bash=True, timeout=0).stdout == "unlimited\n"
    assert c.exec("cat").stdout == ""  # stdin is /dev/null: no hang
    env = c.exec("env", env={"FOO": "bar baz"}).stdout
    assert "FOO=bar baz" in env.splitlines()
    assert "COCALC_SERVER" not in env and SECRET_KEY not in env
    home = c.exec("pwd").stdout.strip()
    assert home == str(exec_server.data_dir / "projects" / PROJECT_ID)
    assert c.exec("echo $HOME").stdout.strip() == home
    assert c.exec("echo", ["a b", "$HOME"], bash=True).stdout == "a b $HOME\n"


def test_path_stays_in_the_project(c: CocalcClient) -> None:
    c.exec("mkdir -p sub/dir")
    assert c.exec("pwd", path="sub/dir").stdout.strip().endswith(f"{PROJECT_ID}/sub/dir")
    for path in ("..", "/etc", "sub/../../x"):
        with pytest.raises(Exception, match="outside the project directory"):
            c.exec("pwd", path=path)


def unique_sleep() -> str:
    """A ``sleep`` argument no other process has: how the tests find a job's processes."""
    return f"{300 + time.time() % 1000:.6f}"


def test_timeout_kills_the_whole_process_group(c: CocalcClient) -> None:
    marker, leader = unique_sleep(), unique_sleep()
    job = c.submit(f"sleep {marker} & echo started; sleep {leader}", timeout=1.5)
    result = c.wait(job)
    assert result.timed_out and result.status == "error" and result.exit_code == 1
    assert result.stdout == "started\n"  # stdout is kept (master would empty it)
    assert all_gone(f"sleep {marker}") and all_gone(f"sleep {leader}")


def test_cancel_kills_a_child_that_ignores_sigterm(c: CocalcClient) -> None:
    marker = unique_sleep()
    script = f"trap '' TERM; sh -c \"trap '' TERM; echo child; sleep {marker}\" & wait"
    job = c.submit(script, timeout=600)
    deadline = time.monotonic() + 10
    while "child" not in c.job(job).stdout and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not all_gone(f"sleep {marker}", within=0)
    final = c.cancel(job)
    assert final.status == "killed" and final.exit_code == 1 and final.stdout.startswith("child")
    assert all_gone(f"sleep {marker}")
    assert c.job(job).status == "killed"
    assert c.cancel(job) == c.job(job)  # cancelling a finished job changes nothing


@pytest.mark.parametrize("sandbox", ["none", "bwrap"])
def test_cancel_fallback_signals_the_group_on_a_server_without_async_cancel(
    tmp_path: Path, sandbox: str
) -> None:
    """Answer ``async_cancel`` as CoCalc master does; everything else reaches the server.

    On CoCalc all commands of a project share its container, so the second command can
    signal the first; in the sandbox they share the project's PID namespace the same way."""
    marker = unique_sleep()
    script = f"trap '' TERM; sh -c \"trap '' TERM; echo child; sleep {marker}\" & wait"
    exec_server = LocalServer(
        data_dir=tmp_path, api_keys=[SECRET_KEY], args=["--pool-size", "0", "--sandbox", sandbox]
    ).start()
    c = exec_server.client(project_id=PROJECT_ID)
    job = c.submit(script, timeout=600)
    while "child" not in c.job(job).stdout:
        time.sleep(0.05)
    master = {
        "error": "Error executing command 'undefined' with args 'undefined' -- "
        "TypeError: Cannot read properties of undefined (reading 'split')"
    }
    with requests_mock.Mocker(real_http=True) as m:
        m.post(
            exec_server.url + "/api/v2/exec",
            additional_matcher=lambda r: "async_cancel" in (r.json() or {}),
            json=master,
        )
        final = c.cancel(job, grace=1)
    c.close()
    exec_server.stop()
    assert any("kill -TERM" in (r.json() or {}).get("command", "") for r in m.request_history)
    assert final.done and all_gone(f"sleep {marker}")


def test_hub_timeout_answers_undefined_and_the_command_goes_on(
    c: CocalcClient, exec_server: LocalServer
) -> None:
    marker = exec_server.data_dir / "projects" / PROJECT_ID / "finished-late"
    started = time.monotonic()
    with pytest.raises(CocalcTimeoutError, match="undefined"):
        c.exec(f"sleep {HUB_TIMEOUT + 1}; touch {marker.name}", timeout=30)
    assert HUB_TIMEOUT - 0.5 < time.monotonic() - started < HUB_TIMEOUT + 2
    deadline = time.monotonic() + 10
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert marker.exists()


def test_wait_reconnects_through_hub_timeouts(c: CocalcClient) -> None:
    job = c.submit(f"sleep {2 * HUB_TIMEOUT + 1}; echo ok", timeout=60)
    started = time.monotonic()
    result = c.wait(job)
    assert result.ok and result.stdout == "ok\n"
    assert time.monotonic() - started > 2 * HUB_TIMEOUT


def test_eight_concurrent_jobs_each_get_exactly_their_own_output(c: CocalcClient) -> None:
    jobs = [
        c.submit(f"for i in $(seq 1 40); do echo job{n}-$i; sleep 0.02; done", timeout=60)
        for n in range(8)
    ]
    results: dict[int, str] = {}

    def wait(n: int) -> None:
        with CocalcClient(api_key=SECRET_KEY, host=c.host, project_id=PROJECT_ID) as own:
            results[n] = own.wait(jobs[n]).stdout

    threads = [threading.Thread(target=wait, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert {n: results[n] for n in range(8)} == {
        n: "".join(f"job{n}-{i}\n" for i in range(1, 41)) for n in range(8)
    }


def test_a_100_mb_flood_is_capped_and_the_server_stays_well(
    c: CocalcClient, exec_server: LocalServer
) -> None:
    job = c.submit("head -c 100000000 /dev/zero | tr '\\0' x; echo done >&2", timeout=120)
    result = c.wait(job)
    limit = 1024 * 1024
    assert result.ok and result.truncated
    assert result.stdout == "x" * limit + f" (truncated at {limit} characters)"
    assert result.stderr == "done\n"
    blocking = c.exec("head -c 100000000 /dev/zero | tr '\\0' y", max_output=1000)
    assert blocking.stdout == "y" * 1000 + " (truncated at 1000 characters)"
    assert exec_server.process is not None
    rss = psutil.Process(exec_server.process.pid).memory_info().rss
    assert rss < 400 * 1024 * 1024
    assert c.exec("echo", ["still here"]).stdout == "still here\n"


def test_stats_sample_the_process_tree(c: CocalcClient) -> None:
    code = "import time; x = bytearray(60 * 2**20); time.sleep(2.6)"
    job = c.submit("python3", ["-c", code], timeout=30)
    result = c.wait(job, stats=True)
    assert result.ok and len(result.stats) >= 1
    assert max(s.mem_rss for s in result.stats) > 50
    assert all(s.timestamp >= (job.start or 0) for s in result.stats)


def test_spawn_failure_and_nonzero_exit_through_the_client(c: CocalcClient) -> None:
    with pytest.raises(CocalcCommandError) as info:
        c.exec("no-such-program-zz")
    assert info.value.exit_code is None and "ENOENT" in info.value.stderr
    assert "could not be started" in str(info.value)
    job = c.submit("no-such-program-zz")
    assert job.pid is None
    result = c.wait(job)
    assert result.status == "error" and "not able to run" in result.stderr
    failing = c.exec("echo out; echo err >&2; exit 5", err_on_exit=False)
    assert (failing.exit_code, failing.stdout, failing.stderr) == (5, "out\n", "err\n")


def test_run_script_carries_tricky_code(c: CocalcClient) -> None:
    code = "s = '''it's \"q\" $HOME `id` EOF\n<<'EOF'\n'''\nprint(s.strip())\nprint('é 😀')\nlen(s)"
    here = code.rsplit("\n", 1)[0] + "\nprint(repr(len(s)))"  # the same code, run locally
    expected = subprocess.run([sys.executable, "-c", here], capture_output=True, text=True)
    result = c.run_script(code, "python3")
    assert result.stdout == expected.stdout and "$HOME `id` EOF\n<<'EOF'" in result.stdout
    assert c.run_script("echo $1-$2", "bash", ["a", "b c"]).stdout == "a-b c\n"
    job = c.submit_script("import sys; sys.exit(4)", "python3")
    assert c.wait(job).exit_code == 4


def test_cli_run_streams_and_exits_with_the_commands_code(exec_server: LocalServer) -> None:
    env = {"COCALC_HOST": exec_server.url, "COCALC_API_KEY": SECRET_KEY, "PATH": "/usr/bin:/bin"}
    base = [sys.executable, "-m", "cocalc_tasks"]
    done = subprocess.run(
        [*base, "run", "-p", PROJECT_ID, "--", "bash", "-c", "echo a; echo b >&2; exit 3"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert (done.returncode, done.stdout, done.stderr) == (3, "a\n", "b\n")
    started = subprocess.run(
        [*base, "run", "-p", PROJECT_ID, "--async", "--", "sleep", "30"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    job_id = started.stdout.strip()
    assert re.fullmatch(r"[0-9a-f-]{36}", job_id), started.stderr
    cancel = subprocess.run(
        [*base, "job", "cancel", job_id, "-p", PROJECT_ID, "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert json.loads(cancel.stdout)["status"] == "killed"
    waited = subprocess.run(
        [*base, "job", "wait", job_id, "-p", PROJECT_ID], capture_output=True, env=env, timeout=60
    )
    assert waited.returncode == 137
    timed = subprocess.run(
        [*base, "run", "-p", PROJECT_ID, "--timeout", "1", "--", "sleep", "10"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert timed.returncode == 124 and "killed command 'sleep 10'" in timed.stderr
