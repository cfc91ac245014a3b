"""The CLI end to end on mocked HTTP: output routing, exit codes, images, JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests_mock

from cocalc_tasks import compute_hash
from cocalc_tasks.cli import main
from tests.conftest import SECRET_KEY, load_fixture

HOST = "http://cocalc.test"
EXECUTE = HOST + "/api/v2/jupyter/execute"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_exec_routes_streams_and_results(capsys: pytest.CaptureFixture[str]) -> None:
    body = {
        "output": [
            {"name": "stdout", "text": "hi\n"},
            {"name": "stderr", "text": "warn\n"},
            {"data": {"text/plain": "7 * 17^2"}},
        ],
        "created": "2025-01-01T00:00:00Z",
    }
    with requests_mock.Mocker() as m:
        m.post(EXECUTE, json=body)
        code, out, err = run(capsys, "exec", "--host", HOST, "-k", "sage-9.8", "factor(2023)")
    assert (code, out, err) == (0, "hi\n7 * 17^2\n", "warn\n")
    assert m.last_request.json() == {"input": "factor(2023)", "kernel": "sage-9.8"}


def test_api_option_pins_the_route(capsys: pytest.CaptureFixture[str]) -> None:
    with requests_mock.Mocker() as m:
        m.post(HOST + "/api/conat/hub", json={"output": [{"name": "stdout", "text": "5\n"}]})
        code, out, _ = run(capsys, "exec", "--host", HOST, "--api", "hub", "-k", "python3", "5")
    assert (code, out) == (0, "5\n") and m.last_request.json()["name"] == "jupyter.execute"
    with pytest.raises(SystemExit):
        main(["exec", "--api", "graphql", "-k", "python3", "1"])


def test_remote_exception_prints_clean_traceback_and_exits_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with requests_mock.Mocker() as m:
        m.post(EXECUTE, json=load_fixture("execute_user_exception.json"))
        code, _out, err = run(capsys, "exec", "--host", HOST, "-k", "python3", "1/0")
    assert code == 1
    assert "ZeroDivisionError" in err and "\x1b[" not in err


@pytest.mark.parametrize(
    ("fixture", "exit_code"),
    [
        ("error_not_signed_in_project.json", 3),
        ("error_unknown_kernel.json", 3),
        ("error_quota_account.json", 4),
    ],
)
def test_api_errors_exit_codes(
    capsys: pytest.CaptureFixture[str], fixture: str, exit_code: int
) -> None:
    with requests_mock.Mocker() as m:
        m.post(EXECUTE, json=load_fixture(fixture))
        code, _, err = run(
            capsys, "exec", "--host", HOST, "--api-key", SECRET_KEY, "-k", "python3", "1"
        )
    assert code == exit_code
    assert err.startswith("cocalc-tasks: error:") and SECRET_KEY not in err


def test_invalid_argument_exits_2_without_sending(capsys: pytest.CaptureFixture[str]) -> None:
    with requests_mock.Mocker() as m:
        code, _, err = run(
            capsys, "exec", "--host", HOST, "-k", "python3", "--project-id", "nope", "1"
        )
        assert m.call_count == 0
    assert code == 2 and "project_id is not a valid UUID" in err


def test_code_from_file_stdin_and_history_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "code.py").write_text("print(a+b)")
    (tmp_path / "hist.json").write_text(json.dumps(["a=2", "b=3"]))
    with requests_mock.Mocker() as m:
        m.post(EXECUTE, json=load_fixture("execute_stdout_fresh.json"))
        run(
            capsys,
            "exec",
            "--host",
            HOST,
            "-k",
            "python3",
            "-f",
            str(tmp_path / "code.py"),
            "--history-file",
            str(tmp_path / "hist.json"),
            "--no-cache",
        )
        assert m.last_request.json() == {
            "input": "print(a+b)",
            "kernel": "python3",
            "history": ["a=2", "b=3"],
            "noCache": True,
        }
        monkeypatch.setattr("sys.stdin", __import__("io").StringIO("print(1)\n"))
        run(capsys, "exec", "--host", HOST, "-k", "python3", "-")
        assert m.last_request.json()["input"] == "print(1)\n"


def test_save_images_and_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with requests_mock.Mocker() as m:
        m.post(EXECUTE, json=load_fixture("execute_display_png.json"))
        code, out, err = run(
            capsys,
            "exec",
            "--host",
            HOST,
            "-k",
            "python3",
            "--json",
            "--save-images",
            str(tmp_path),
            "display(img)",
        )
    assert code == 0
    assert json.loads(out)["ok"] is True
    saved = list(tmp_path.glob("*.png"))
    assert len(saved) == 1 and saved[0].read_bytes().startswith(b"\x89PNG")
    assert "saved" in err


def test_kernels_table_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    body = load_fixture("kernels_success.json")
    with requests_mock.Mocker() as m:
        m.post(HOST + "/api/v2/jupyter/kernels", json=body)
        code, out, _ = run(capsys, "kernels", "--host", HOST)
        assert code == 0 and [line.split()[0] for line in out.splitlines()] == [
            k["name"] for k in body["kernels"]
        ]
        code, out, _ = run(capsys, "kernels", "--host", HOST, "--json")
        assert json.loads(out) == body["kernels"]


def test_hash_offline_and_lookup(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "hash", "-k", "python3", "2+3")
    assert (code, out.strip()) == (0, compute_hash("2+3", "python3"))
    with requests_mock.Mocker() as m:
        m.post(EXECUTE, json=load_fixture("execute_hash_miss.json"))
        code, _, err = run(capsys, "hash", "--host", HOST, "-k", "python3", "--lookup", "2+3")
        assert code == 5 and "not in the server's cache" in err
        assert m.last_request.json() == {"hash": compute_hash("2+3", "python3")}
        m.post(EXECUTE, json=load_fixture("execute_stdout_and_result_cache_hit.json"))
        code, out, _ = run(capsys, "hash", "--host", HOST, "-k", "python3", "--lookup", "x")
        assert code == 0 and "5050" in out


def test_hash_digests_the_project_exec_would_send_to(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With COCALC_PROJECT_ID set, exec runs in that project; hash must digest the same call,
    or `hash --lookup` misses the result exec has just cached."""
    project = "6e75dbf1-0342-4249-9dce-6b21648656e9"
    monkeypatch.setenv("COCALC_PROJECT_ID", project)
    code, out, _ = run(capsys, "hash", "-k", "python3", "2+3")
    assert (code, out.strip()) == (0, compute_hash("2+3", "python3", project_id=project))
    with requests_mock.Mocker() as m:
        m.post(EXECUTE, json=load_fixture("execute_stdout_fresh.json"))
        run(capsys, "exec", "--host", HOST, "-k", "python3", "2+3")
        assert m.last_request.json()["project_id"] == project
    other = "11111111-2222-4333-8444-555555555555"
    code, out, _ = run(capsys, "hash", "-k", "python3", "--project-id", other, "2+3")
    assert out.strip() == compute_hash("2+3", "python3", project_id=other)


def test_connection_failure_exits_4(capsys: pytest.CaptureFixture[str]) -> None:
    from tests.support.flaky_server import closed_port

    code, _, err = run(capsys, "kernels", "--host", f"http://127.0.0.1:{closed_port()}")
    assert code == 4 and "nothing is listening at" in err


def test_the_readme_and_the_guide_list_the_clis_exit_codes() -> None:
    """The tables name exactly the codes the CLI has; tests/server/test_first_hour.py shows
    the mistakes each row names ending with that code."""
    import re

    from cocalc_tasks import cli
    from tests.conftest import ROOT

    codes = {value for name, value in vars(cli).items() if name.startswith("EXIT_")}
    for page in ("README.md", "docs/guides/cli.md"):
        text = (ROOT / page).read_text(encoding="utf-8")
        rows = re.findall(r"^\| ([0-9][0-9, ]*|the command's own) \| (.+) \|$", text, re.M)
        shown = {int(c) for row, _ in rows for c in re.findall(r"\d+", row)}
        shown |= {
            int(c)
            for row, meaning in rows
            if not row[0].isdigit()
            for c in re.findall(r"\b1\d\d\b", meaning)
        }
        assert shown == codes, page
