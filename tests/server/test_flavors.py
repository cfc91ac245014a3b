"""``--flavor cocalc-ai``: the local server behaves like CoCalc's rewrite, and the client's
``api="auto"`` finds its way there, end to end with real kernels."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import requests

from cocalc_tasks import CocalcClient
from cocalc_tasks.errors import CocalcAuthError, CocalcUnsupportedError
from cocalc_tasks.server.local_server import LocalServer
from tests.conftest import SECRET_KEY

V2_KEY = "sk-cc-v2.local.test0v2secret0key0only"


@pytest.fixture(scope="module")
def rewrite() -> Iterator[LocalServer]:
    with LocalServer(
        api_keys=[V2_KEY, SECRET_KEY], args=["--flavor", "cocalc-ai", "--kernels", "python3"]
    ) as server:
        server.wait_for_pool("python3", 1)
        yield server


def post(server: LocalServer, path: str, body: dict[str, object], key: str = V2_KEY) -> object:
    response = requests.post(
        server.url + path, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=60
    )
    return response.status_code, response.json() if response.text.strip() else None


def test_the_rewrite_has_no_v2_jupyter_routes_and_no_hub_jupyter(rewrite: LocalServer) -> None:
    status, _ = post(rewrite, "/api/v2/jupyter/execute", {"input": "1", "kernel": "python3"})
    assert status == 404
    assert post(rewrite, "/api/conat/hub", {"name": "jupyter.execute", "args": [{}]}) == (
        200,
        {"error": "Error: unknown function 'jupyter.execute'"},
    )
    project = str(uuid.uuid4())
    status, body = post(
        rewrite,
        "/api/conat/project",
        {"project_id": project, "name": "system.jupyterExecute", "args": [{}]},
    )
    assert body == {
        "error": "Error: unknown function 'system.jupyterExecute' -- available functions are "
        '["ping","exec"]'
    }
    status, body = post(
        rewrite,
        "/api/conat/project",
        {
            "project_id": project,
            "name": "jupyter.apiExecute",
            "args": [{"input": "2+3", "kernel": "python3"}],
        },
    )
    assert body == [{"data": {"text/plain": "5"}}]


def test_auto_reaches_the_rewrite_through_the_project_bridge(rewrite: LocalServer) -> None:
    project = str(uuid.uuid4())
    with CocalcClient(V2_KEY, rewrite.url, project_id=project) as client:
        result = client.execute("import os; print(os.getcwd() != ''); 6 * 7", "python3")
        assert (result.route, result.text, result.stdout) == ("project", "42", "True\n")
        assert "python3" in [k.name for k in client.kernels()]
        with pytest.raises(CocalcUnsupportedError, match="no hash-only cache lookup"):
            client.cached(result.hash)
        assert client.run_script("print(2 ** 10)").stdout == "1024\n"  # the exec API stays


def test_the_rewrite_refuses_keys_not_in_the_v2_format(rewrite: LocalServer) -> None:
    project = str(uuid.uuid4())
    auto = CocalcClient(SECRET_KEY, rewrite.url, project_id=project)
    with auto, pytest.raises(CocalcAuthError, match="must be signed in"):  # the hub says so
        auto.execute("1", "python3")
    bridge = CocalcClient(SECRET_KEY, rewrite.url, project_id=project, api="project")
    with bridge, pytest.raises(CocalcAuthError, match="must sign in with an account API key"):
        bridge.execute("1", "python3")


def test_auto_on_master_stays_on_v2_and_project_bridge_works_there(tmp_path: object) -> None:
    with LocalServer(api_keys=[SECRET_KEY], args=["--kernels", "python3"]) as master:
        master.wait_for_pool("python3", 1)
        with CocalcClient(SECRET_KEY, master.url) as client:
            assert client.execute("2+3", "python3").route == "v2"
        with CocalcClient(SECRET_KEY, master.url, project_id=str(uuid.uuid4()), api="project") as c:
            result = c.execute("2+3", "python3")
    assert (result.route, result.text) == ("project", "5")
