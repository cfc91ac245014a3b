"""A parameterised Sage notebook through run_notebook, on real passagemath."""

from __future__ import annotations

import base64
import re
import uuid
from pathlib import Path

import nbformat
import pytest

from cocalc_tasks import CocalcClient, run_notebook
from tests.conftest import SECRET_KEY
from tests.notebooks.builders import sage_report
from tests.support.sage_server import sage_server

pytestmark = pytest.mark.sage


def test_the_report_notebook_in_sage(tmp_path: Path) -> None:
    out = tmp_path / "sage-report.ipynb"
    with (
        sage_server() as url,
        CocalcClient(api_key=SECRET_KEY, host=url, project_id=str(uuid.uuid4())) as client,
    ):
        result = run_notebook(
            sage_report(40), parameters={"n": 2023}, output=str(out), client=client
        )
    saved = nbformat.read(out, as_version=4)
    nbformat.validate(saved)
    assert result.kernel == "sagemath"  # sage-9.8 through the server's alias
    assert "n = 2023" in saved.cells[1].source
    assert result.results == {"factored": "7 * 17^2"}
    (png,) = [o for o in saved.cells[2].outputs if "image/png" in o.get("data", {})]
    assert base64.b64decode(png["data"]["image/png"]).startswith(b"\x89PNG")
    assert result.cells[4].result.stdout == "slept\n"
    assert re.match(r"(Sage|passagemath)(Math)? version \d+\.\d+", result.cells[5].result.stdout)
