"""The Prefect guide's examples (docs/guides/prefect.md), run in order in one session, as a
reader would: the block is saved, then every flow runs against a local server with real Sage."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.conftest import SECRET_KEY
from tests.support.guide_examples import PREFECT_PAGES, blocks, run_page
from tests.support.sage_server import sage_server


@pytest.mark.parametrize("page", PREFECT_PAGES)
def test_the_guide_runs_as_written(page: str, tmp_path: Path) -> None:
    python = [b for b in blocks(page) if b.lang == "python"]
    assert len(python) >= 3, f"docs/{page}: the credentials, a flow and a job"
    with sage_server() as url:
        env = {
            "COCALC_HOST": url,
            "COCALC_API_KEY": SECRET_KEY,
            "COCALC_PROJECT_ID": str(uuid.uuid4()),
        }
        assert run_page(page, env, tmp_path) == len(python)
