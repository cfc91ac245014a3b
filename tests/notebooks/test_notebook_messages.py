"""What a person sees of a notebook run: every kernel the project lists runs notebooks, the
progress reads as progress, nothing of the runner's protocol or a kernel's shutdown shows, and
a notebook missing in the project is a bad argument that says where paths start."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from cocalc_tasks import CocalcClient, run_notebook
from cocalc_tasks.cli import main
from cocalc_tasks.server.local_server import LocalServer
from tests.conftest import SECRET_KEY
from tests.notebooks.builders import notebook
from tests.notebooks.conftest import PROJECT_ID

pytestmark = pytest.mark.server


def test_every_kernel_the_project_lists_runs_notebooks(client: CocalcClient) -> None:
    listed = {spec.name for spec in client.kernels(PROJECT_ID)}
    assert "bash" in listed
    for name in sorted(listed & {"bash", "python3"}):
        language = "bash" if name == "bash" else "python"
        code = "echo $((6 * 7))" if name == "bash" else "print(6 * 7)"
        ran = run_notebook(notebook([(code, [])], kernel=name, language=language), client=client)
        assert ran.ok and ran.kernel == name and ran.cells[0].value == 42, name


def test_notebook_run_prints_progress_and_no_protocol(
    server: LocalServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nb = notebook([("x = 1", ["parameters"]), ("print(x)", []), ("x * 2", [])])
    nb.cells.insert(0, nbformat.v4.new_markdown_cell("# a report"))
    path = tmp_path / "report.ipynb"
    nbformat.write(nb, path)
    argv = ["notebook", "run", str(path), "-p", PROJECT_ID, "-P", "x=5"]
    code = main([*argv, "--host", server.url, "--api-key", SECRET_KEY])
    out, err = capsys.readouterr()
    assert code == 0, err
    # three code cells and the injected parameters cell: counted from 1, code cells only
    assert err.splitlines() == [f"cell {n} of 4 done" for n in range(1, 5)]
    assert out.startswith("executed 5 cells in ")
    for noise in ("COCALC-NOTEBOOK", "Parent appears to have exited", "IPKernelApp"):
        assert noise not in out + err


def test_progress_is_a_bar_on_a_terminal(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from cocalc_tasks import cli

    monkeypatch.setattr("sys.stderr.isatty", lambda: True)
    cli._show_progress(1, 4)
    cli._show_progress(4, 4)
    err = capsys.readouterr().err
    assert (
        err == "\r[#######.......................] 1/4 cells" + "\r[" + "#" * 30 + "] 4/4 cells\n"
    )


def test_a_missing_project_notebook_is_a_bad_argument(
    server: LocalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["notebook", "run", "project:reports/nope.ipynb", "-p", PROJECT_ID]
    code = main([*argv, "--host", server.url, "--api-key", SECRET_KEY])
    err = capsys.readouterr().err
    assert code == 2
    assert (
        f"no notebook 'reports/nope.ipynb' in project {PROJECT_ID}: 'project:' paths are "
        "relative to the project's home"
    ) in err
    assert "FileNotFoundError" not in err and "remote code raised" not in err
    code = main([*argv, "--path", "nowhere", "--host", server.url, "--api-key", SECRET_KEY])
    err = capsys.readouterr().err
    assert code == 2 and "path 'nowhere' is not a directory in the project" in err
    assert len(err) < 300  # not the uploaded file, base64-encoded, as CoCalc's message has it
    with CocalcClient(SECRET_KEY, server.url, project_id=PROJECT_ID) as c:
        c.exec("mkdir -p sub")
    code = main([*argv, "--path", "sub", "--host", server.url, "--api-key", SECRET_KEY])
    assert code == 2 and "relative to 'sub' in the project's home" in capsys.readouterr().err
