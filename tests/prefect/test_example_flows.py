"""Every example flow against the local server, then a scan for the API key."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SECRET_KEY
from tests.prefect.helpers import artifacts
from tests.support.sage_stub import FACTOR_SETUP


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, local_server: str) -> None:
    monkeypatch.setenv("COCALC_HOST", local_server)
    monkeypatch.setenv("COCALC_API_KEY", SECRET_KEY)


def test_compute_and_pass(env: None) -> None:
    from example_dags.prefect_flows import compute_and_pass

    state = compute_and_pass(return_state=True)
    assert state.is_completed()
    primes = [n for n in range(2, 60) if all(n % d for d in range(2, int(n**0.5) + 1))]
    assert state.result() == {"count": len(primes), "largest": 59, "checked": sum(primes) % 59}
    assert "27" in artifacts("cocalc-prime-check")[0].data


def test_map_snippets(env: None) -> None:
    from example_dags.prefect_flows import map_snippets

    assert map_snippets() == sum(sum(k * k for k in range(n)) for n in (10, 100, 1000))


def test_sage_flow_with_python3(env: None, credentials: Any) -> None:
    from example_dags.prefect_flows import sage_factor

    credentials.save("cocalc-local", overwrite=True)
    result = sage_factor(credentials_block="cocalc-local", kernel="python3", setup=[FACTOR_SETUP])
    assert result == "7 * 17^2"
    assert "7 * 17^2" in artifacts("cocalc-sage-factor")[0].data


def test_no_key_in_logs_results_artifacts_or_parameters(env: None) -> None:
    from prefect.client.orchestration import get_client
    from prefect.logging.handlers import APILogWorker

    from example_dags.prefect_flows import compute_and_pass

    compute_and_pass()
    APILogWorker.drain_all(timeout=10)
    with get_client(sync_client=True) as client:
        logs = [log.message for log in client.read_logs()]
        arts = [json.dumps(a.data) for a in client.read_artifacts()]
        params = [json.dumps(r.parameters, default=str) for r in client.read_flow_runs()]
    assert logs and arts and params
    for text in [*logs, *arts, *params]:
        assert SECRET_KEY not in text
    storage = Path(os.environ["PREFECT_HOME"]) / "storage"
    for path in storage.rglob("*") if storage.exists() else []:
        if path.is_file():
            assert SECRET_KEY.encode() not in path.read_bytes(), path


def test_sage_flow_on_real_sage() -> None:
    from example_dags.prefect_flows import sage_factor
    from prefect_tasks import CocalcCredentials
    from tests.support.sage_server import sage_server

    with sage_server() as url:
        CocalcCredentials(api_key=SECRET_KEY, host=url).save("cocalc-sage", overwrite=True)
        assert sage_factor(credentials_block="cocalc-sage") == "7 * 17^2"  # kernel sage-10.4
    assert "7 * 17^2" in artifacts("cocalc-sage-factor")[0].data


@pytest.mark.parametrize("flavor", ["master", "cocalc-ai"])
def test_the_same_flow_runs_against_both_flavours(
    monkeypatch: pytest.MonkeyPatch, flavor: str
) -> None:
    """The unchanged flow reaches CoCalc's rewrite through the project bridge (api="auto")."""
    import uuid

    from cocalc_tasks.server.local_server import LocalServer

    key = "sk-cc-v2.flow.flavour0test0secret" if flavor == "cocalc-ai" else SECRET_KEY
    with LocalServer(api_keys=[key], args=["--kernels", "python3", "--flavor", flavor]) as srv:
        monkeypatch.setenv("COCALC_HOST", srv.url)
        monkeypatch.setenv("COCALC_API_KEY", key)
        monkeypatch.setenv("COCALC_PROJECT_ID", str(uuid.uuid4()))
        from example_dags.prefect_flows import compute_and_pass

        assert compute_and_pass() == {"count": 17, "largest": 59, "checked": 27}
