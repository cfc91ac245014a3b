"""``/api/conat/project`` driven by the official ``cocalc-api`` client, unchanged."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import cocalc_api  # the official client (the `peer` dependency group)
import pytest
import requests

from cocalc_tasks.server.local_server import LocalServer
from tests.conftest import SECRET_KEY
from tests.server.conftest import OTHER_PROJECT, PROJECT_ID, PROJECT_KEY

pytestmark = pytest.mark.server

FIXTURES = Path(__file__).parents[1] / "fixtures" / "cocalc-exec"


@pytest.fixture
def project(server: LocalServer) -> Any:
    return cocalc_api.Project(api_key=SECRET_KEY, host=server.url, project_id=PROJECT_ID)


def test_ping_and_exec(project: Any) -> None:
    before = int(time.time() * 1000)
    assert before <= project.system.ping()["now"] <= int(time.time() * 1000)
    assert project.system.exec(command="echo hello", timeout=10) == {
        "stdout": "hello\n",
        "stderr": "",
        "exit_code": 0,
        "type": "blocking",
    }
    with pytest.raises(RuntimeError) as info:
        project.system.exec(command="false")
    # the bridge has no route prefix: the engine's text as is
    assert str(info.value) == "command ''false' (args=)' exited with nonzero code 1 -- stderr=''"


def test_conat_fixture_request(server: LocalServer) -> None:
    data = json.loads((FIXTURES / "conat_system_exec.json").read_text())
    response = requests.post(
        server.url + data["request"]["path"],
        json=data["request"]["body"],
        auth=(SECRET_KEY, ""),
        timeout=30,
    )
    assert response.status_code == 200 and response.json() == data["response"]["body"]


def test_async_jobs_through_the_bridge(project: Any) -> None:
    started = project.call("system.exec", [{"command": "sleep 0.3; echo done", "async_call": True}])
    assert started["status"] == "running"
    record = project.call(
        "system.exec", [{"async_get": started["job_id"], "async_await": True}], timeout=30000
    )
    assert record["status"] == "completed" and record["stdout"] == "done\n"
    with pytest.raises(
        RuntimeError, match=re.escape("Error: Async operation 'nope' does not exist.")
    ):
        project.call("system.exec", [{"async_get": "nope"}])


def test_jupyter_execute(project: Any) -> None:
    assert project.system.jupyter_execute(input="sum(range(100))", kernel="python3") == [
        {"data": {"text/plain": "4950"}}
    ]
    assert project.system.jupyter_execute(
        history=["a = 100"], input="print(a + 1)", kernel="python3"
    ) == [{"name": "stdout", "text": "101\n"}]
    with pytest.raises(RuntimeError, match="No spec available for kernel"):
        project.system.jupyter_execute(input="1", kernel="no-such-kernel")


def _pooled(project: Any, within: float = 30) -> list[dict[str, Any]]:
    """The project's warm python3 kernels, once there are any."""
    deadline = time.monotonic() + within
    while True:
        kernels = [
            k for k in project.system.list_jupyter_kernels() if k["kernel_name"] == "python3"
        ]
        if kernels or time.monotonic() > deadline:
            return kernels
        time.sleep(0.1)


def test_list_and_stop_kernels(project: Any) -> None:
    # A project's pool fills once the project has run code (its own pool in its sandbox).
    assert project.system.jupyter_execute(input="1", kernel="python3")
    kernels = _pooled(project)
    assert kernels
    for kernel in kernels:
        assert isinstance(kernel["pid"], int) and Path(kernel["connectionFile"]).is_file()
    victim = kernels[0]
    assert project.system.stop_jupyter_kernel(pid=victim["pid"]) == {"success": True}
    after = project.system.list_jupyter_kernels()
    assert victim["connectionFile"] not in {k["connectionFile"] for k in after}
    assert project.system.stop_jupyter_kernel(pid=-1) == {"success": False}
    refilled = _pooled(project)  # the pool refills
    assert refilled and victim["connectionFile"] not in {k["connectionFile"] for k in refilled}


def test_project_keys_and_refusals(server: LocalServer) -> None:
    own = cocalc_api.Project(api_key=PROJECT_KEY, host=server.url)  # no project_id needed
    assert "now" in own.system.ping()
    assert own.system.exec(command="pwd")["stdout"].strip().endswith(PROJECT_ID)
    other = cocalc_api.Project(api_key=PROJECT_KEY, host=server.url, project_id=OTHER_PROJECT)
    with pytest.raises(RuntimeError, match="project specific api key must match requested project"):
        other.system.ping()
    stranger = cocalc_api.Project(api_key="sk-unknown", host=server.url, project_id=PROJECT_ID)
    with pytest.raises(RuntimeError, match="must sign in as project or account"):
        stranger.system.ping()
    account = cocalc_api.Project(api_key=SECRET_KEY, host=server.url)
    with pytest.raises(RuntimeError, match="must specify project_id or use project-specific"):
        account.system.ping()


def test_bridge_timeout_leaves_the_command_running(project: Any, server: LocalServer) -> None:
    marker = server.data_dir / "projects" / PROJECT_ID / "bridge-late"
    marker.unlink(missing_ok=True)
    with pytest.raises(RuntimeError) as info:
        project.call("system.exec", [{"command": f"sleep 1; touch {marker.name}"}], timeout=300)
    assert str(info.value) == (
        f"timeout - callHub: subject='project.{PROJECT_ID}.0.api.-', "
        "name='system.exec', code='408' "
    )
    deadline = time.monotonic() + 10
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists()


def test_hub_ping_and_test(server: LocalServer) -> None:
    hub = cocalc_api.Hub(api_key=SECRET_KEY, host=server.url)
    assert "now" in hub.system.ping()
    first, second = hub.system.test(), hub.system.test()
    assert first["account_id"] == second["account_id"] and len(first["account_id"]) == 36
    assert SECRET_KEY not in json.dumps(first)


def test_listing_right_after_a_call_is_never_empty_and_a_listed_kernel_stops(
    server: LocalServer,
) -> None:
    """As the official client's kernel-management tests do, many times over: execute, list at
    once (no waiting, no retry), stop the first kernel listed, list again."""
    project = cocalc_api.Project(
        api_key=SECRET_KEY, host=server.url, project_id="0bb0b0b0-1111-4222-8333-444444444444"
    )
    for round_ in range(15):
        assert project.system.jupyter_execute(input=f"{round_} + 1", kernel="python3")
        listed = project.system.list_jupyter_kernels()
        assert listed, f"round {round_}: no kernel listed right after a call"
        victim = listed[0]
        assert project.system.stop_jupyter_kernel(pid=victim["pid"]) == {"success": True}
        after = project.system.list_jupyter_kernels()
        assert after, f"round {round_}: no kernel listed right after a stop"
        assert victim["connectionFile"] not in {k["connectionFile"] for k in after}
