"""A corpus of bad input against the server: every case gets a clear ``{"error": ...}`` (HTTP
200) or a correct result, and the server stays healthy afterwards."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import requests

from cocalc_tasks.server.local_server import LocalServer
from tests.conftest import SECRET_KEY
from tests.reliability.conftest import PROJECT_ID, assert_healthy

EXECUTE = "/api/v2/jupyter/execute"
KERNELS = "/api/v2/jupyter/kernels"
HUB = "/api/conat/hub"
EXEC = "/api/v2/exec"
PROJECT = "/api/conat/project"
BASIC = "Basic " + base64.b64encode(f"{SECRET_KEY}:".encode()).decode()


def ok_body(**kw: Any) -> dict[str, Any]:
    return {"input": "print(1)", "kernel": "python3", "noCache": True, **kw}


def exec_body(**kw: Any) -> dict[str, Any]:
    return {"project_id": PROJECT_ID, "command": "echo", "args": ["x"], **kw}


def bridge(name: str, *args: Any, **kw: Any) -> dict[str, Any]:
    return {"project_id": PROJECT_ID, "name": name, "args": list(args), **kw}


AUTH = {"Authorization": BASIC}
UNKNOWN_JOB = "00000000-0000-4000-8000-000000000000"

# /api/v2/exec and the project bridge: (case id, path, body, headers, expected fragment)
EXEC_CASES: list[tuple[str, str, Any, dict[str, str], str]] = [
    ("exec-anonymous", EXEC, exec_body(), {}, "must be signed in"),
    ("exec-no-project", EXEC, {"command": "echo"}, AUTH, "valid uuid"),
    ("exec-project-int", EXEC, exec_body(project_id=5), AUTH, "valid uuid"),
    ("exec-no-command", EXEC, {"project_id": PROJECT_ID}, AUTH, "command must be a non-empty"),
    ("exec-command-int", EXEC, exec_body(command=5), AUTH, "command must be a non-empty"),
    ("exec-command-blank", EXEC, exec_body(command="  "), AUTH, "command must be a non-empty"),
    ("exec-command-nul", EXEC, exec_body(command="ec\x00ho"), AUTH, "contains a NUL"),
    ("exec-args-str", EXEC, exec_body(args="x"), AUTH, "args must be a list of strings"),
    ("exec-args-ints", EXEC, exec_body(args=[1, 2]), AUTH, "args must be a list of strings"),
    ("exec-args-nul", EXEC, exec_body(args=["a\x00"]), AUTH, "contains a NUL"),
    ("exec-timeout-str", EXEC, exec_body(timeout="5"), AUTH, "timeout must be a number"),
    ("exec-timeout-negative", EXEC, exec_body(timeout=-1), AUTH, "must not be negative"),
    ("exec-max-output-zero", EXEC, exec_body(max_output=0), AUTH, "max_output must be"),
    ("exec-max-output-str", EXEC, exec_body(max_output="9"), AUTH, "max_output must be"),
    ("exec-bash-str", EXEC, exec_body(bash="yes"), AUTH, "bash must be true or false"),
    ("exec-err-on-exit-int", EXEC, exec_body(err_on_exit=1), AUTH, "err_on_exit must be"),
    ("exec-async-call-str", EXEC, exec_body(async_call="1"), AUTH, "async_call must be"),
    ("exec-env-list", EXEC, exec_body(env=["A=1"]), AUTH, "env must be an object"),
    ("exec-env-int-value", EXEC, exec_body(env={"A": 1}), AUTH, "env['A'] must be a string"),
    ("exec-env-bad-name", EXEC, exec_body(env={"A=B": "1"}), AUTH, "invalid variable name"),
    ("exec-path-dotdot", EXEC, exec_body(path="../.."), AUTH, "outside the project directory"),
    ("exec-path-absolute", EXEC, exec_body(path="/etc"), AUTH, "outside the project directory"),
    ("exec-path-missing", EXEC, exec_body(path="no/such"), AUTH, "is not a directory"),
    ("exec-path-int", EXEC, exec_body(path=3), AUTH, "path must be a string"),
    ("exec-get-int", EXEC, {"project_id": PROJECT_ID, "async_get": 5}, AUTH, "a job id must"),
    (
        "exec-get-unknown",
        EXEC,
        {"project_id": PROJECT_ID, "async_get": UNKNOWN_JOB},
        AUTH,
        f"Error: Async operation '{UNKNOWN_JOB}' does not exist.",
    ),
    (
        "exec-cancel-unknown",
        EXEC,
        {"project_id": PROJECT_ID, "async_cancel": UNKNOWN_JOB},
        AUTH,
        "does not exist",
    ),
    (
        "exec-stats-str",
        EXEC,
        {"project_id": PROJECT_ID, "async_get": UNKNOWN_JOB, "async_stats": "yes"},
        AUTH,
        "async_stats must be",
    ),
    ("exec-json-array", EXEC, b"[1]", AUTH, "must be a JSON object"),
    ("exec-json-broken", EXEC, b'{"command": ', AUTH, "not valid JSON"),
    ("exec-program-missing", EXEC, exec_body(command="no-such-program-zz"), AUTH, "ENOENT"),
    ("project-no-auth", PROJECT, bridge("system.ping"), {}, "You must provide authentication"),
    (
        "project-digest",
        PROJECT,
        bridge("system.ping"),
        {"Authorization": "Digest x"},
        "Unknown authorization type 'Digest'",
    ),
    (
        "project-unknown-key",
        PROJECT,
        bridge("system.ping"),
        {"Authorization": "Bearer sk-nope"},
        "must sign in as project or account",
    ),
    (
        "project-no-project-id",
        PROJECT,
        {"name": "system.ping"},
        AUTH,
        "must specify project_id or use project-specific api key",
    ),
    ("project-bad-uuid", PROJECT, bridge("system.ping", project_id="x"), AUTH, "valid uuid"),
    ("project-unknown-fn", PROJECT, bridge("system.nope"), AUTH, "unknown function 'system.nope'"),
    ("project-no-name", PROJECT, {"project_id": PROJECT_ID}, AUTH, "unknown function 'None'"),
    ("project-args-object", PROJECT, bridge("system.exec", args={}), AUTH, "args must be a list"),
    ("project-args0-int", PROJECT, bridge("system.exec", 5), AUTH, "args[0] must be an object"),
    ("project-timeout-zero", PROJECT, bridge("system.ping", timeout=0), AUTH, "positive number"),
    (
        "project-exec-bad",
        PROJECT,
        bridge("system.exec", {"command": 5}),
        AUTH,
        "invalid exec request: command must be",
    ),
    (
        "project-stop-bad-pid",
        PROJECT,
        bridge("system.stopJupyterKernel", {"pid": "1"}),
        AUTH,
        "pid must be an integer",
    ),
    (
        "project-jupyter-no-kernel",
        PROJECT,
        bridge("system.jupyterExecute", {"input": "1"}),
        AUTH,
        "Error: kernel must be specified",
    ),
    ("hub-system-unknown", HUB, {"name": "system.nope"}, AUTH, "unknown hub function"),
]


# (case id, path, method, raw body or JSON value, headers, expected: "error" fragment or "ok")
CASES: list[tuple[str, str, str, Any, dict[str, str], str]] = [
    # malformed and truncated JSON
    ("json-open-brace", EXECUTE, "POST", b"{", {}, "not valid JSON"),
    (
        "json-truncated",
        EXECUTE,
        "POST",
        b'{"input": "1", "kernel": "python3"',
        {},
        "not valid JSON",
    ),
    ("json-trailing-garbage", EXECUTE, "POST", b"{}x", {}, "not valid JSON"),
    ("json-single-quotes", EXECUTE, "POST", b"{'input': '1'}", {}, "not valid JSON"),
    ("json-array", EXECUTE, "POST", b"[1, 2]", {}, "must be a JSON object"),
    ("json-string", EXECUTE, "POST", b'"input"', {}, "must be a JSON object"),
    ("json-number", EXECUTE, "POST", b"42", {}, "must be a JSON object"),
    ("json-null", EXECUTE, "POST", b"null", {}, "must be a JSON object"),
    ("json-nan", EXECUTE, "POST", b'{"input": NaN, "kernel": "python3"}', {}, "input must be"),
    ("empty-body", EXECUTE, "POST", b"", {}, "input or hash must not be null"),
    # wrong types in every field
    ("input-int", EXECUTE, "POST", {"input": 5, "kernel": "python3"}, {}, "input must be a string"),
    ("input-list", EXECUTE, "POST", {"input": ["1"], "kernel": "python3"}, {}, "input must be"),
    ("input-dict", EXECUTE, "POST", {"input": {}, "kernel": "python3"}, {}, "input must be"),
    ("input-bool", EXECUTE, "POST", {"input": True, "kernel": "python3"}, {}, "input must be"),
    ("input-null", EXECUTE, "POST", {"input": None, "kernel": "python3"}, {}, "must not be null"),
    ("kernel-int", EXECUTE, "POST", {"input": "1", "kernel": 3}, {}, "kernel must be a string"),
    ("kernel-list", EXECUTE, "POST", {"input": "1", "kernel": ["python3"]}, {}, "kernel must be"),
    ("kernel-empty", EXECUTE, "POST", {"input": "1", "kernel": ""}, {}, "kernel must be specified"),
    (
        "kernel-blank",
        EXECUTE,
        "POST",
        {"input": "1", "kernel": "   "},
        {},
        "kernel must be specified",
    ),
    ("kernel-unknown", EXECUTE, "POST", ok_body(kernel="nosuchkernel"), {}, "Unable to Spawn"),
    ("kernel-traversal", EXECUTE, "POST", ok_body(kernel="../../etc"), {}, "Unable to Spawn"),
    ("history-str", EXECUTE, "POST", ok_body(history="a=1"), {}, "history must be a list"),
    ("history-int", EXECUTE, "POST", ok_body(history=1), {}, "history must be a list"),
    ("history-ints", EXECUTE, "POST", ok_body(history=[1, 2]), {}, "history must be a list"),
    ("history-null-item", EXECUTE, "POST", ok_body(history=[None]), {}, "history must be"),
    ("history-dict", EXECUTE, "POST", ok_body(history={"a": 1}), {}, "history must be"),
    ("project-int", EXECUTE, "POST", ok_body(project_id=7), {}, "valid uuid"),
    ("project-invalid", EXECUTE, "POST", ok_body(project_id="not-a-uuid"), {}, "valid uuid"),
    ("project-empty", EXECUTE, "POST", ok_body(project_id=""), {}, "valid uuid"),
    ("path-int", EXECUTE, "POST", ok_body(path=3), {}, "path must be a string"),
    ("path-list", EXECUTE, "POST", ok_body(path=["a"]), {}, "path must be a string"),
    ("hash-int", EXECUTE, "POST", {"hash": 12345}, {}, "40 hex digits"),
    ("hash-short", EXECUTE, "POST", {"hash": "abc"}, {}, "40 hex digits"),
    ("hash-not-hex", EXECUTE, "POST", {"hash": "g" * 40}, {}, "40 hex digits"),
    ("tag-int", EXECUTE, "POST", ok_body(tag=5), {}, "tag must be a string"),
    ("nocache-string", EXECUTE, "POST", ok_body(noCache="yes"), {}, "ok"),
    ("unknown-field", EXECUTE, "POST", ok_body(limits={"x": 1}, compute_server_id=3), {}, "ok"),
    # sizes
    (
        "huge-input-5mb",
        EXECUTE,
        "POST",
        ok_body(input="# " + "x" * 5_000_000 + "\nprint(1)"),
        {},
        "ok",
    ),
    (
        "huge-history",
        EXECUTE,
        "POST",
        ok_body(history=[f"v{i} = {i}" for i in range(3000)], input="print(v2999 - 2998)"),
        {},
        "ok",
    ),
    (
        "body-over-limit",
        EXECUTE,
        "POST",
        b'{"input": "' + b"x" * (11 * 1024 * 1024) + b'"}',
        {},
        "larger than the limit",
    ),
    # encodings and unicode
    (
        "invalid-utf8",
        EXECUTE,
        "POST",
        b'{"input": "\xff\xfe", "kernel": "python3"}',
        {},
        "not valid UTF-8",
    ),
    ("binary-body", EXECUTE, "POST", bytes(range(256)), {}, "not valid"),
    (
        "unicode-emoji-rtl",
        EXECUTE,
        "POST",
        ok_body(input="print('😀 \u202eabc \u200d é')"),
        {},
        "ok",
    ),
    (
        "lone-surrogate",
        EXECUTE,
        "POST",
        b'{"input": "print(\'\\ud800\')", "kernel": "python3"}',
        {},
        "any",
    ),
    ("nul-in-input", EXECUTE, "POST", ok_body(input="print('a\\x00b')"), {}, "ok"),
    ("bom-in-kernel", EXECUTE, "POST", ok_body(kernel="\ufeffpython3"), {}, "any"),
    # paths
    (
        "path-dotdot",
        EXECUTE,
        "POST",
        ok_body(project_id=PROJECT_ID, path="../.."),
        {"Authorization": BASIC},
        "outside the project directory",
    ),
    (
        "path-absolute",
        EXECUTE,
        "POST",
        ok_body(project_id=PROJECT_ID, path="/etc"),
        {"Authorization": BASIC},
        "outside the project directory",
    ),
    (
        "path-nul",
        EXECUTE,
        "POST",
        ok_body(project_id=PROJECT_ID, path="a\x00b"),
        {"Authorization": BASIC},
        "NUL",
    ),
    (
        "path-missing",
        EXECUTE,
        "POST",
        ok_body(project_id=PROJECT_ID, path="no/such"),
        {"Authorization": BASIC},
        "not a directory",
    ),
    # auth
    (
        "auth-digest",
        EXECUTE,
        "POST",
        ok_body(project_id=PROJECT_ID),
        {"Authorization": "Digest abc"},
        "make sure you are signed in",
    ),
    (
        "auth-empty-basic",
        EXECUTE,
        "POST",
        ok_body(project_id=PROJECT_ID),
        {"Authorization": "Basic " + base64.b64encode(b":").decode()},
        "signed in",
    ),
    (
        "auth-empty-bearer",
        EXECUTE,
        "POST",
        ok_body(project_id=PROJECT_ID),
        {"Authorization": "Bearer "},
        "signed in",
    ),
    (
        "auth-bad-base64",
        EXECUTE,
        "POST",
        ok_body(project_id=PROJECT_ID),
        {"Authorization": "Basic !!!"},
        "signed in",
    ),
    (
        "auth-wrong-key",
        EXECUTE,
        "POST",
        ok_body(project_id=PROJECT_ID),
        {"Authorization": "Bearer sk-wrong-key"},
        "signed in",
    ),
    # methods
    ("get-execute", EXECUTE, "GET", None, {}, "input or hash must not be null"),
    ("put-execute", EXECUTE, "PUT", ok_body(), {}, "input or hash must not be null"),
    ("delete-kernels", KERNELS, "DELETE", None, {}, "kernels"),
    ("kernels-bad-project", KERNELS, "POST", {"project_id": "zzz"}, {}, "valid uuid"),
    # the hub bridge
    ("hub-no-auth", HUB, "POST", {"name": "jupyter.kernels"}, {}, "MUST provide an api key"),
    (
        "hub-unknown-name",
        HUB,
        "POST",
        {"name": "projects.delete", "args": [{}]},
        {"Authorization": BASIC},
        "unknown hub function",
    ),
    (
        "hub-args-not-object",
        HUB,
        "POST",
        {"name": "jupyter.execute", "args": ["x"]},
        {"Authorization": BASIC},
        "args[0] must be an object",
    ),
    (
        "hub-missing-kernel",
        HUB,
        "POST",
        {"name": "jupyter.execute", "args": [{"input": "1"}]},
        {"Authorization": BASIC},
        "Error: kernel must be specified",
    ),
]


def send(
    server: LocalServer, path: str, method: str, body: Any, headers: dict[str, str]
) -> requests.Response:
    kwargs: dict[str, Any] = {
        "headers": {"Content-Type": "application/json", **headers},
        "timeout": 120,
    }
    if isinstance(body, bytes):
        kwargs["data"] = body
    elif body is not None:
        kwargs["data"] = json.dumps(body).encode()
    return requests.request(method, server.url + path, **kwargs)


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 40
    assert len(EXEC_CASES) >= 25


@pytest.mark.parametrize(
    ("path", "body", "headers", "expected"),
    [pytest.param(*case[1:], id=case[0]) for case in EXEC_CASES],
)
def test_bad_exec_and_bridge_input(
    server: LocalServer, path: str, body: Any, headers: dict[str, str], expected: str
) -> None:
    response = send(server, path, "POST", body, headers)
    assert response.status_code == 200, response.text[:300]
    answer = response.json()
    assert isinstance(answer, dict) and expected in answer.get("error", ""), answer


@pytest.mark.parametrize(
    ("path", "method", "body", "headers", "expected"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_bad_input(
    server: LocalServer, path: str, method: str, body: Any, headers: dict[str, str], expected: str
) -> None:
    response = send(server, path, method, body, headers)
    assert response.status_code == 200, response.text[:300]
    answer = response.json()
    if expected == "ok":
        assert "error" not in answer, answer
        assert answer["success"] is True and isinstance(answer["output"], list)
    elif expected == "kernels":
        assert "python3" in {k["name"] for k in answer["kernels"]}
    elif expected == "any":
        assert ("error" in answer and isinstance(answer["error"], str)) or "output" in answer
    else:
        assert "error" in answer and expected in answer["error"], answer


def test_correct_results_for_the_odd_but_valid_cases(server: LocalServer) -> None:
    body = send(
        server,
        EXECUTE,
        "POST",
        ok_body(history=[f"v{i} = {i}" for i in range(3000)], input="print(v2999 - 2998)"),
        {},
    ).json()
    assert body["output"] == [{"name": "stdout", "text": "1\n"}]
    body = send(server, EXECUTE, "POST", ok_body(input="print('😀 \u202eabc')"), {}).json()
    assert body["output"] == [{"name": "stdout", "text": "😀 \u202eabc\n"}]


def test_server_is_healthy_after_the_corpus(server: LocalServer) -> None:
    assert_healthy(server)
