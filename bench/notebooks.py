"""A ten-cell notebook through run_notebook against the local server, and papermill running
the same notebook locally, measured side by side (alternating runs)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import KEY, QUICK, ms
from cocalc_tasks import CocalcClient, run_notebook
from cocalc_tasks.server.local_server import LocalServer

PROJECT_ID = "6e75dbf1-0342-4249-9dce-6b21648656e9"


def ten_cells() -> Any:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.cells = [nbformat.v4.new_code_cell("n = 1", metadata={"tags": ["parameters"]})]
    nb.cells += [nbformat.v4.new_code_cell(f"x{i} = n + {i}\nx{i}") for i in range(9)]
    return nb


def notebook_costs(server: LocalServer) -> dict[str, Any]:
    import nbformat
    import papermill

    runs = 5 if QUICK else 15
    ours, theirs = [], []
    with (
        tempfile.TemporaryDirectory() as tmp,
        CocalcClient(KEY, server.url, project_id=PROJECT_ID) as c,
    ):
        source = Path(tmp) / "ten.ipynb"
        nbformat.write(ten_cells(), source)
        for i in range(runs + 1):  # the first of each warms up and is not counted
            started = time.perf_counter()
            result = run_notebook(
                str(source), parameters={"n": i}, output=f"{tmp}/ours.ipynb", client=c
            )
            took = time.perf_counter() - started
            assert result.cells[-1].value == i + 8
            if i:
                ours.append(took)
            started = time.perf_counter()
            papermill.execute_notebook(
                str(source), f"{tmp}/theirs.ipynb", parameters={"n": i}, progress_bar=False
            )
            if i:
                theirs.append(time.perf_counter() - started)
    remote, local = ms(ours), ms(theirs)
    return {
        "run_notebook": remote,
        "papermill_local": local,
        "ratio_p50": remote["p50_ms"] / local["p50_ms"],
    }
