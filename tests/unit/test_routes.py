"""``CocalcClient(api=...)``: the v2 route, the hub bridge and the project bridge, negotiated
by ``auto`` across CoCalc master and its rewrite, against mocked answers of each."""

from __future__ import annotations

import base64
import logging
from typing import Any

import pytest
import requests_mock

from cocalc_tasks import CocalcClient, ExecutionResult
from cocalc_tasks.errors import (
    CocalcCapabilityError,
    CocalcServerError,
    CocalcUnsupportedError,
    CocalcValidationError,
)
from tests.conftest import SECRET_KEY, load_fixture

HOST = "https://cocalc.example"
V2 = HOST + "/api/v2/jupyter/execute"
V2_KERNELS = HOST + "/api/v2/jupyter/kernels"
HUB = HOST + "/api/conat/hub"
PROJECT = HOST + "/api/conat/project"
PID = "6e75dbf1-0342-4249-9dce-6b21648656e9"
V2_KEY = "sk-cc-v2.k1d.s3cr3tv2secretvalue"
OUTPUTS = [{"name": "stdout", "text": "5\n"}]
LOGIN_PAGE = "<!DOCTYPE html><html><body>Sign in to CoCalc</body></html>"
HUB_GONE = {"error": "Error: unknown function 'jupyter.execute'"}
MASTER_FUNCTION_GONE = {
    "error": "Error: unknown function 'system.jupyterExecute' -- available functions are "
    '["version","listing","ping","exec","signal"]'
}


def client(**kwargs: Any) -> CocalcClient:
    return CocalcClient(kwargs.pop("key", SECRET_KEY), HOST, retries=0, **kwargs)


def bodies(m: requests_mock.Mocker) -> list[tuple[str, Any]]:
    return [(r.url.removeprefix(HOST), r.json()) for r in m.request_history]


def test_v2_answers_first_and_is_remembered(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "cocalc_tasks.client")
    with requests_mock.Mocker() as m, client() as c:
        m.post(V2, json=load_fixture("execute_stdout_fresh.json"))
        first = c.execute("print('hello world')", "python3")
        c.execute("1", "python3")
    assert first.route == "v2" and first.stdout == "hello world\n"
    assert [url for url, _ in bodies(m)] == ["/api/v2/jupyter/execute"] * 2
    assert [r.getMessage() for r in caplog.records if "route" in r.getMessage()] == [
        f"{HOST} answers Jupyter calls on the v2 route"
    ]


@pytest.mark.parametrize(
    ("status", "text"),
    [(404, "Not Found"), (405, '{"error":"method_not_allowed"}'), (200, LOGIN_PAGE)],
)
def test_a_missing_v2_route_moves_on_to_the_hub(status: int, text: str) -> None:
    with requests_mock.Mocker() as m, client() as c:
        m.post(V2, status_code=status, text=text)
        m.post(HUB, json={"output": OUTPUTS, "created": "2026-01-01T00:00:00.000Z"})
        result = c.execute("2+3", "python3", history=["x = 1"], tag="t")
        again = c.execute("2+3", "python3")
    assert result.route == again.route == "hub" and result.stdout == "5\n"
    sent = bodies(m)
    assert sent[1] == (
        "/api/conat/hub",
        {
            "name": "jupyter.execute",
            "args": [{"input": "2+3", "kernel": "python3", "history": ["x = 1"], "tag": "t"}],
        },
    )
    assert [url for url, _ in sent[2:]] == ["/api/conat/hub"]  # remembered


def test_the_rewrite_is_reached_through_the_project_bridge() -> None:
    """cocalc-ai: no v2 route, no hub jupyter.*, and system.jupyterExecute is gone: the
    project bridge's jupyter.apiExecute answers with the bare output list."""
    with requests_mock.Mocker() as m, client(key=V2_KEY, project_id=PID) as c:
        m.post(V2, status_code=404, text="Not Found")
        m.post(HUB, json=HUB_GONE)

        def project(request: Any, context: Any) -> Any:
            name = request.json()["name"]
            return MASTER_FUNCTION_GONE if name == "system.jupyterExecute" else OUTPUTS

        m.post(PROJECT, json=project)
        result = c.execute("2+3", "python3", path="work")
        again = c.execute("1", "python3")
    assert result.route == again.route == "project" and result.stdout == "5\n"
    assert result.to_dict()["route"] == "project"
    assert ExecutionResult.from_dict(result.to_dict()).route == "project"
    sent = bodies(m)
    assert [body.get("name") for _, body in sent] == [
        None,
        "jupyter.execute",
        "system.jupyterExecute",
        "jupyter.apiExecute",
        "jupyter.apiExecute",  # both remembered: route and function
    ]
    assert sent[3][1] == {
        "project_id": PID,
        "name": "jupyter.apiExecute",
        "args": [{"input": "2+3", "kernel": "python3", "path": "work"}],
        "timeout": 90_000,
    }
    auth = m.request_history[0].headers["Authorization"]
    assert auth == f"Bearer {V2_KEY}"


def test_master_project_bridge_uses_system_jupyter_execute() -> None:
    with requests_mock.Mocker() as m, client(api="project", project_id=PID) as c:
        m.post(PROJECT, json=OUTPUTS)
        assert c.execute("2+3", "python3").route == "project"
    assert bodies(m)[0][1]["name"] == "system.jupyterExecute"
    assert m.request_history[0].headers["Authorization"].startswith("Basic ")


def test_every_route_missing_gives_one_error_listing_what_was_tried() -> None:
    with requests_mock.Mocker() as m, client(project_id=PID) as c:
        for url in (V2, HUB, PROJECT):
            m.post(url, text=LOGIN_PAGE)
        with pytest.raises(CocalcUnsupportedError) as info:
            c.execute("1", "python3")
    message = str(info.value)
    assert message.startswith(f"{HOST} answered none of the Jupyter routes")
    for tried in (
        "/api/v2/jupyter/execute",
        "/api/conat/hub",
        "/api/conat/project system.jupyterExecute",
        "/api/conat/project jupyter.apiExecute",
    ):
        assert tried in message
    assert SECRET_KEY not in message
    with requests_mock.Mocker() as m, client() as c:  # no project: the bridge is named
        m.post(V2, status_code=404, text="Not Found")
        m.post(HUB, status_code=404, text="Not Found")
        with pytest.raises(
            CocalcUnsupportedError, match=r"the project bridge \(needs a project_id\)"
        ):
            c.execute("1", "python3")


def test_real_errors_are_not_taken_for_missing_routes() -> None:
    """A refused key, a capability error or a cut-off body stop the search and raise."""
    capability = {"error": f"API key lacks required capability 'project:exec' for project {PID}"}
    with requests_mock.Mocker() as m, client(key=V2_KEY, project_id=PID) as c:
        m.post(V2, status_code=404, text="Not Found")
        m.post(HUB, json=HUB_GONE)
        m.post(PROJECT, json=capability)
        with pytest.raises(CocalcCapabilityError):
            c.execute("1", "python3")
    with requests_mock.Mocker() as m, client() as c:
        m.post(V2, text='{"output": [')
        with pytest.raises(CocalcServerError, match="not JSON"):
            c.execute("1", "python3")
        assert m.call_count == 1


def test_a_fixed_api_never_searches() -> None:
    with requests_mock.Mocker() as m, client(api="v2") as c:
        m.post(V2, status_code=404, text="Not Found")
        with pytest.raises(CocalcServerError, match="no such API endpoint"):
            c.execute("1", "python3")
        assert m.call_count == 1
    with requests_mock.Mocker() as m, client(api="hub") as c:
        m.post(HUB, json={"output": OUTPUTS})
        assert c.execute("1", "python3").route == "hub"
    with pytest.raises(CocalcValidationError, match="api must be one of auto, v2, hub, project"):
        client(api="graphql")  # type: ignore[arg-type]


def test_the_hash_lookup_exists_only_on_v2() -> None:
    digest = "a" * 40
    with requests_mock.Mocker() as m, client(api="hub") as c:
        with pytest.raises(CocalcUnsupportedError, match="hub route, which has no hash-only"):
            c.cached(digest)
        assert m.call_count == 0
    with requests_mock.Mocker() as m, client() as c:
        m.post(V2, status_code=404, text="Not Found")
        with pytest.raises(CocalcUnsupportedError, match="has no hash-only cache lookup"):
            c.cached(digest)
    with requests_mock.Mocker() as m, client() as c:
        m.post(V2, json=load_fixture("execute_stdout_and_result_cache_hit.json"))
        hit = c.cached(digest)
    assert hit is not None and hit.route == "v2"


def test_kernels_on_each_route() -> None:
    specs = load_fixture("kernels_success.json")["kernels"]
    with requests_mock.Mocker() as m, client() as c:
        m.post(V2_KERNELS, status_code=404, text="Not Found")
        m.post(HUB, json=specs)
        assert [k.name for k in c.kernels()] == [s["name"] for s in specs]
    assert bodies(m)[1][1] == {"name": "jupyter.kernels", "args": [{"project_id": None}]}
    with requests_mock.Mocker() as m, client(api="project", project_id=PID) as c:
        m.post(PROJECT, json=specs)
        assert len(c.kernels()) == len(specs)
    assert bodies(m)[0][1] == {"project_id": PID, "name": "jupyter.kernels", "args": []}


def test_both_key_formats() -> None:
    with requests_mock.Mocker() as m:
        m.post(V2, json={"output": OUTPUTS})
        with client(key=V2_KEY) as c:
            c.execute("1", "python3")
            assert V2_KEY not in repr(c)
        with client() as c:
            c.execute("1", "python3")
    bearer, basic = (r.headers["Authorization"] for r in m.request_history)
    assert bearer == f"Bearer {V2_KEY}"
    assert basic == "Basic " + base64.b64encode(f"{SECRET_KEY}:".encode()).decode()
