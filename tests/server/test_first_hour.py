"""A newcomer's mistakes against a real local server: a wrong key, a typo in the host, a
missing option. Each gets a message that says what is wrong and where to fix it, and the exit
code the README's table promises."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cocalc_tasks import CocalcAuthError, CocalcClient, whoami
from cocalc_tasks.server.local_server import LocalServer
from tests.conftest import SECRET_KEY
from tests.server.conftest import PROJECT_ID, PROJECT_KEY
from tests.support.flaky_server import closed_port
from tests.unit.test_cli import run

pytestmark = pytest.mark.server


# -- keys ------------------------------------------------------------------------------------
def test_whoami_names_an_account_key_a_project_key_and_no_key(
    server: LocalServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, _ = run(capsys, "whoami", "--host", server.url, "--api-key", SECRET_KEY)
    assert code == 0 and out.startswith("an account key (account ")
    assert f"from the --api-key option, accepted by {server.url}" in out
    monkeypatch.setenv("COCALC_API_KEY", PROJECT_KEY)
    code, out, _ = run(capsys, "whoami", "--host", server.url, "-p", PROJECT_ID, "--json")
    assert code == 0
    assert json.loads(out) == {
        "kind": "project",
        "host": server.url,
        "key_source": "COCALC_API_KEY",
        "account_id": None,
        "project_id": PROJECT_ID,
    }
    monkeypatch.delenv("COCALC_API_KEY")
    code, out, _ = run(capsys, "whoami", "--host", server.url)
    assert code == 0 and out.startswith("anonymous: no API key was given")


def test_a_wrong_key_runs_anonymously_but_whoami_exits_3_and_names_its_source(
    server: LocalServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COCALC_API_KEY", "sk-wrong")
    code, out, _ = run(capsys, "exec", "--host", server.url, "-k", "python3", "1+1")
    assert (code, out) == (0, "2\n")  # CoCalc's rule: an unknown key is anonymous
    code, _, err = run(capsys, "whoami", "--host", server.url)
    assert code == 3
    assert f"{server.url} does not know the API key from COCALC_API_KEY" in err
    assert "sk-wrong" not in err
    with pytest.raises(CocalcAuthError, match="from the api_key argument"):
        whoami(api_key="sk-wrong", host=server.url)
    with (
        CocalcClient(PROJECT_KEY, server.url) as c,
        pytest.raises(CocalcAuthError, match="a project key for another project"),
    ):
        c.whoami("11111111-2222-4333-8444-555555555555")


# -- hosts and exit codes --------------------------------------------------------------------
def test_host_mistakes_get_the_fix_and_the_right_exit_code(
    server: LocalServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bare = server.url.removeprefix("http://")
    monkeypatch.setenv("COCALC_HOST", bare)
    code, _, err = run(capsys, "exec", "-k", "python3", "1+1")
    assert code == 2
    assert f"the host {bare!r} (from COCALC_HOST) has no scheme: use http://{bare}" in err
    monkeypatch.delenv("COCALC_HOST")
    code, _, err = run(capsys, "exec", "--host", "http://127.0.0.1:87999", "-k", "python3", "1")
    assert code == 2 and "(from the --host option) has a bad port" in err
    tls = "https://" + bare
    code, _, err = run(capsys, "exec", "--host", tls, "-k", "python3", "1+1")
    assert code == 2
    assert f"{tls} (from the --host option) speaks plain HTTP, not TLS: use {server.url}" in err
    closed = f"http://127.0.0.1:{closed_port()}"
    code, _, err = run(capsys, "exec", "--host", closed, "-k", "python3", "1+1")
    assert code == 4
    assert err.strip() == (
        f"cocalc-tasks: error: nothing is listening at {closed} (from the --host option): "
        "connection refused"
    )
    for noise in ("_HttpPool", "Max retries", "WRONG_VERSION_NUMBER", "adapters"):
        assert noise not in err


# -- one spelling for the project ------------------------------------------------------------
def test_dash_p_works_everywhere_and_a_bad_project_names_its_source(
    server: LocalServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    common = ["--host", server.url, "--api-key", SECRET_KEY]
    code, out, _ = run(capsys, "exec", *common, "-k", "python3", "-p", PROJECT_ID, "1+1")
    assert (code, out) == (0, "2\n")
    code, out, _ = run(capsys, "kernels", *common, "-p", PROJECT_ID)
    assert code == 0 and "python3" in out
    code, out, _ = run(capsys, "hash", *common, "-k", "python3", "-p", PROJECT_ID, "1+1")
    assert code == 0 and len(out.strip()) == 40
    monkeypatch.setenv("COCALC_PROJECT_ID", "nope")
    code, _, err = run(capsys, "exec", *common, "-k", "python3", "1+1")
    assert code == 2
    assert "project_id is not a valid UUID: 'nope' (from COCALC_PROJECT_ID)" in err
    assert "the UUID in its URL on CoCalc" in err and "any UUID names a project" in err


# -- the server ------------------------------------------------------------------------------
def test_serve_prints_what_it_serves_to_whom_and_how(tmp_path: Path) -> None:
    command = [
        sys.executable, "-m", "cocalc_tasks", "serve", "--port", "0", "--pool-size", "0",
        "--data-dir", str(tmp_path), "--project-key", f"{PROJECT_KEY}={PROJECT_ID}",
        "--kernel-alias", "py=python3",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(7)]
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert lines[0].startswith("cocalc-tasks server listening on http://127.0.0.1:")
    shown = dict(line.strip().split(":", 1) for line in lines[1:])
    assert [*shown] == ["kernels", "keys", "anonymous", "sandbox", "database", "data"]
    assert "python3 (also py)" in shown["kernels"] and "bash" in shown["kernels"]
    assert "0 account key(s), 1 project key(s)" in shown["keys"]
    assert shown["anonymous"].strip().startswith("allowed")
    assert shown["sandbox"].strip().startswith("bwrap: each project in its own sandbox")
    assert shown["database"].strip() == f"SQLite, {tmp_path / 'state.sqlite3'}"
    assert PROJECT_KEY not in "".join(lines)


def test_a_sage_name_without_sage_says_how_to_get_it(
    server: LocalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "exec", "--host", server.url, "-k", "sage-9.8", "factor(2023)")
    assert code == 3
    assert "SageMath is not installed where this server runs" in err
    assert "make sage-env" in err and "make serve-sage" in err
