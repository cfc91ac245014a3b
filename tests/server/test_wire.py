"""Wire-level contract: POST JSON only, HTTP 200 errors, GET tolerated, the conat hub bridge."""

from __future__ import annotations

import pytest
import requests

from cocalc_tasks.server.local_server import LocalServer
from tests.conftest import SECRET_KEY


def post(server: LocalServer, path: str, **kw: object) -> requests.Response:
    return requests.post(server.url + path, timeout=30, **kw)  # type: ignore[arg-type]


def test_get_kernels_works_and_get_execute_has_no_params(server: LocalServer) -> None:
    kernels = requests.get(server.url + "/api/v2/jupyter/kernels", timeout=10)
    assert kernels.status_code == 200 and kernels.json()["success"] is True
    execute = requests.get(
        server.url + "/api/v2/jupyter/execute?input=1&kernel=python3", timeout=10
    )
    assert (execute.status_code, execute.json()) == (
        200,
        {"error": "input or hash must not be null"},
    )


def test_query_string_is_ignored_on_post(server: LocalServer) -> None:
    r = post(server, "/api/v2/jupyter/execute?kernel=python3", json={"input": "1"})
    assert r.json() == {"error": "kernel must be specified in hash is not specified"}


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "not valid JSON"),
        (b'{"input": "1", "kernel": ', "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b"\xff\xfe", "not valid UTF-8"),
    ],
)
def test_malformed_bodies_get_error_envelope(
    server: LocalServer, body: bytes, fragment: str
) -> None:
    r = post(
        server, "/api/v2/jupyter/execute", data=body, headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 200 and fragment in r.json()["error"]


def test_success_envelope(server: LocalServer) -> None:
    r = post(
        server,
        "/api/v2/jupyter/execute",
        json={"input": "print(2+3)", "kernel": "python3", "noCache": True},
    )
    body = r.json()
    assert set(body) == {"output", "created", "success"} and body["success"] is True
    assert body["created"].endswith("Z") and len(body["created"]) == 24


def test_official_cocalc_api_client(server: LocalServer) -> None:
    cocalc_api = pytest.importorskip("cocalc_api")
    hub = cocalc_api.Hub(api_key=SECRET_KEY, host=server.url)
    result = hub.jupyter.execute(input="print(a+b)", kernel="python3", history=["a=2", "b=3"])
    assert result["output"] == [{"name": "stdout", "text": "5\n"}] and "success" not in result
    kernels = hub.jupyter.kernels()
    assert isinstance(kernels, list) and "python3" in {k["name"] for k in kernels}
    with pytest.raises(RuntimeError, match="Unable to Spawn Jupyter Kernel"):
        hub.jupyter.execute(input="1", kernel="nope")
    bad = cocalc_api.Hub(api_key="sk-wrong", host=server.url)
    with pytest.raises(RuntimeError, match="MUST provide an api key"):
        bad.jupyter.kernels()


def test_hub_hash_miss_is_null(server: LocalServer) -> None:
    r = post(
        server,
        "/api/conat/hub",
        auth=(SECRET_KEY, ""),
        json={"name": "jupyter.execute", "args": [{"hash": "0" * 40}]},
    )
    assert r.status_code == 200 and r.text == "null"
