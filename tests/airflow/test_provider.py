"""Registration: the entry point, `airflow providers list` and `airflow providers hooks`."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import distribution

from airflow_provider.get_provider_info import get_provider_info
from airflow_provider.hooks.cocalc import CocalcHook


def test_package_name_is_the_distribution_name() -> None:
    info = get_provider_info()
    assert info["package-name"] == distribution("cocalc-tasks").metadata["Name"]
    conn = info["connection-types"][0]
    assert conn["connection-type"] == CocalcHook.conn_type == "cocalc"
    assert conn["hook-class-name"] == "airflow_provider.hooks.cocalc.CocalcHook"
    assert set(conn["conn-fields"]) == {"project_id", "verify", "timeout", "api"}
    assert "password" in conn["ui-field-behaviour"]["relabeling"]


def _airflow(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "airflow", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout


def test_airflow_cli_lists_the_provider_and_hook() -> None:
    assert "cocalc-tasks" in _airflow("providers", "list")
    hooks = _airflow("providers", "hooks")
    assert "cocalc" in hooks and "airflow_provider.hooks.cocalc.CocalcHook" in hooks
