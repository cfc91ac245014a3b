"""A local server running from the Sage environment (.venv-sage), for the Sage examples.

``make test`` sets COCALC_REQUIRE_SAGE=1: a missing Sage environment then fails instead of
skipping, so the flagship workload is never silently untested.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from cocalc_tasks.server.local_server import LocalServer
from tests.conftest import ROOT, SECRET_KEY

SAGE_PYTHON = Path(os.environ.get("COCALC_SAGE_PYTHON", ROOT / ".venv-sage/bin/python"))


@contextmanager
def sage_server() -> Iterator[str]:
    if not SAGE_PYTHON.exists():
        message = f"no Sage environment at {SAGE_PYTHON} (make sage-env)"
        if os.environ.get("COCALC_REQUIRE_SAGE") == "1":
            pytest.fail(message)
        pytest.skip(message)
    with LocalServer(
        # No --kernel-alias: sage-9.8 and sage-10.4 are served wherever Sage is installed.
        python=str(SAGE_PYTHON),
        api_keys=[SECRET_KEY],
        args=["--kernels", "sage-10.4"],
    ) as server:
        server.wait_for_pool("sagemath", 1, timeout=180)
        yield server.url
