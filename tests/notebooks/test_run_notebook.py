"""run_notebook through the local server, with real kernels running real notebooks."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from cocalc_tasks import CocalcClient, KernelSession, run_notebook
from cocalc_tasks.errors import CocalcNotebookError, CocalcUnknownKernelError, CocalcValidationError
from cocalc_tasks.model.notebook_cells import cocalc_outputs
from cocalc_tasks.server.local_server import LocalServer
from tests.conftest import SECRET_KEY
from tests.notebooks.builders import failing, notebook, report
from tests.notebooks.conftest import PROJECT_ID


def test_a_parameterised_report_with_a_plot_and_a_40_s_cell(
    client: CocalcClient, tmp_path: Path
) -> None:
    source = tmp_path / "report.ipynb"
    nbformat.write(report(40), source)
    lines: list[str] = []
    steps: list[tuple[int, int]] = []
    out = tmp_path / "out" / "report-run.ipynb"
    result = run_notebook(
        str(source),
        parameters={"n": 10, "label": "weekly"},
        output=str(out),
        client=client,
        on_output=lambda stream, text: lines.append(text),
        on_progress=lambda done, of: steps.append((done, of)),
    )
    saved = nbformat.read(out, as_version=4)
    nbformat.validate(saved)
    assert result.ok and result.output == str(out) and saved == result.notebook
    tags = [c.metadata.get("tags", []) for c in saved.cells]
    assert tags == [["parameters"], ["injected-parameters"], [], ["result:total"], [], []]
    assert "n = 10\nlabel = 'weekly'" in saved.cells[1].source
    (png,) = [o for o in saved.cells[2].outputs if "image/png" in o.get("data", {})]
    assert base64.b64decode(png["data"]["image/png"]).startswith(b"\x89PNG\r\n\x1a\n")
    assert result.results == {"total": 45}
    assert result.cells[4].result.stdout == "slept 40 s\n"  # past any Jupyter cell limit
    assert result.cells[5].result.stdout == "weekly: 45\n"
    assert result.elapsed is not None and result.elapsed >= 40
    assert steps == [(n, 6) for n in range(1, 7)]  # one step per cell, as it finished
    assert "COCALC-NOTEBOOK" not in "".join(lines)  # the runner's protocol is not output
    summary = result.to_dict()
    assert summary["results"] == {"total": 45} and summary["cells"] == 6
    json.dumps(summary)  # what XCom gets is JSON


def test_a_failing_third_cell_names_it_and_the_saved_notebook_ends_there(
    client: CocalcClient, tmp_path: Path
) -> None:
    out = tmp_path / "failed.ipynb"
    with pytest.raises(CocalcNotebookError) as info:
        run_notebook(failing(), output=str(out), client=client)
    error = info.value
    assert error.cell == 2 and error.ename == "ValueError" and error.evalue == "third cell fails"
    assert "cell 2 of the notebook raised ValueError: third cell fails" in str(error)
    assert error.output == str(out) and str(out) in str(error)
    saved = nbformat.read(out, as_version=4)
    nbformat.validate(saved)
    assert len(saved.cells) == 3  # ends at the failing cell
    assert saved.cells[1].outputs[0]["text"] == "second ran\n"
    (tb,) = [o for o in saved.cells[2].outputs if o["output_type"] == "error"]
    assert tb["ename"] == "ValueError" and any(
        "third cell fails" in line for line in tb["traceback"]
    )
    assert error.result is not None and error.result.failed_cell == 2


def test_a_session_exported_and_run_again_gives_the_same_outputs(client: CocalcClient) -> None:
    session = KernelSession("python3", client=client, project_id=PROJECT_ID)
    session.run("import base64\nfrom IPython.display import Image, display\nx = 6")
    session.run("print('x is', x)\nx * 7")
    session.run(
        "png = base64.b64decode('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8"
        "z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==')\ndisplay(Image(data=png))"
    )
    session.run("import sys\nprint('to stderr', file=sys.stderr)\n{'a': [1, 2]}")
    exported = session.to_notebook()
    nbformat.validate(exported)
    assert len(exported.cells) == 4
    rerun = run_notebook(exported, client=client)
    for (code, before), cell in zip(session.runs, rerun.cells, strict=True):
        assert cell.source == code
        assert cocalc_outputs(cell.result.outputs) == before.outputs, code
    assert rerun.cells[2].result.images[0].content.startswith(b"\x89PNG")


def test_kernels_by_alias_a_notebook_in_the_project_and_clear_refusals(
    client: CocalcClient, server: LocalServer
) -> None:
    nb = notebook([("import sys\nprint(sys.version_info[0])", [])], kernel="py-alias")
    assert run_notebook(nb, client=client).cells[0].result.stdout == "3\n"  # the server's alias
    project_dir = server.data_dir / "projects" / PROJECT_ID / "reports"
    project_dir.mkdir(parents=True, exist_ok=True)
    nbformat.write(
        notebook([("n = 1", ["parameters"]), ("print(n * 2)", [])]), project_dir / "in.ipynb"
    )
    remote = run_notebook("project:reports/in.ipynb", parameters={"n": 21}, client=client)
    assert remote.cells[2].result.stdout == "42\n"
    with pytest.raises(CocalcUnknownKernelError, match="no kernel 'nope' in this project"):
        run_notebook(notebook([("1", [])], kernel="nope"), client=client)
    with pytest.raises(CocalcValidationError, match="no notebook at"):
        run_notebook("/no/such/report.ipynb", client=client)
    with pytest.raises(Exception, match="not an identifier"):
        run_notebook(nb, parameters={"bad name": 1}, client=client)
    # Only the executed notebooks stay in the project (the job pages render them).
    work = server.data_dir / "projects" / PROJECT_ID / ".cocalc-tasks/notebooks"
    left = {path.relative_to(work).parts[1] for path in work.glob("*/*")}
    assert left == {"output.ipynb"}


def test_the_cli_runs_a_notebook_with_parameters(server: LocalServer, tmp_path: Path) -> None:
    source = tmp_path / "small.ipynb"
    nbformat.write(
        notebook(
            [
                ("n = 1\nname = 'a'", ["parameters"]),
                ("n * 2", ["result:double"]),
                ("name", ["result"]),
            ]
        ),
        source,
    )
    out = tmp_path / "out.ipynb"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cocalc_tasks",
            "notebook",
            "run",
            str(source),
            "-p",
            PROJECT_ID,
            "-P",
            "n=10",
            "-P",
            "name=x",
            "-o",
            str(out),
            "--host",
            server.url,
        ],
        env={"COCALC_API_KEY": SECRET_KEY, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert f": {out}" in done.stdout
    assert "result double: 20" in done.stdout and 'result 3: "x"' in done.stdout
    nbformat.validate(nbformat.read(out, as_version=4))


def test_megabytes_of_any_text_travel_both_ways_intact(
    client: CocalcClient, tmp_path: Path
) -> None:
    """A 2.5 MB cell source (quotes, heredoc markers, unicode, control characters) goes up in
    many pieces; 3 MB of output comes back in several."""
    blob = ("é 😀 'q' \"d\" EOF\n$HOME `x` \\ \x01\t" * 90_000)[:2_500_000]
    nb = notebook(
        [
            (f"blob = {blob!r}\nprint(len(blob))", []),
            ("print('x' * 3_000_000)", []),
        ]
    )
    out = tmp_path / "big.ipynb"
    result = run_notebook(nb, output=str(out), client=client)
    assert result.cells[0].source == nb.cells[0].source  # the source arrived and returned whole
    assert result.cells[0].result.stdout == f"{len(blob)}\n"
    assert result.cells[1].result.stdout == "x" * 3_000_000 + "\n"
    assert out.stat().st_size > 5_000_000
