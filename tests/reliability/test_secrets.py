"""The API key appears in no log, cache or other file the server wrote.

This test makes its own calls with the key, so it means something wherever it runs; the
``server`` fixture scans the same files once more after the whole suite (order-independent).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from cocalc_tasks import CocalcClient, CocalcError
from cocalc_tasks.server.local_server import LocalServer
from tests.conftest import SECRET_KEY
from tests.reliability.conftest import PROJECT_ID, files_containing


def test_no_key_in_server_log_or_data(server: LocalServer, reliability_dir: Path) -> None:
    with CocalcClient(SECRET_KEY, server.url, project_id=PROJECT_ID) as client:
        client.execute("print(1)", "python3", no_cache=True)
        client.execute("import os; print(sorted(os.environ))", "python3", project_id=PROJECT_ID)
        job = client.submit("echo $HOME; env | wc -l")
        client.wait(job)
        client.exec("false", err_on_exit=False)
        with pytest.raises(CocalcError):
            client.execute("1/0", "no-such-kernel")
    # a key in odd places: a body field and a malformed header
    requests.post(
        server.url + "/api/v2/exec",
        json={"project_id": PROJECT_ID, "command": SECRET_KEY},
        auth=(SECRET_KEY, ""),
        timeout=30,
    )
    requests.post(
        server.url + "/api/conat/project",
        json={"name": "system.ping"},
        headers={"Authorization": f"Weird {SECRET_KEY}"},
        timeout=30,
    )
    files = [p for p in reliability_dir.rglob("*") if p.is_file()]
    assert (reliability_dir / "server.log") in files
    assert any(p.name.startswith("state.sqlite3") for p in files)
    assert files_containing(reliability_dir, SECRET_KEY) == []
