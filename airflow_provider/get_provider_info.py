"""Provider metadata read by Airflow through the ``apache_airflow_provider`` entry point."""

from __future__ import annotations

from typing import Any

_CONNECTION_FIELDS: dict[str, Any] = {
    "project_id": {
        "label": "Project id",
        "description": "Default CoCalc project (UUID); empty means the global sandbox pool.",
        "schema": {"type": ["string", "null"]},
    },
    "verify": {
        "label": "Verify TLS",
        "description": "Verify the server's TLS certificate (true), or a CA bundle path.",
        "schema": {"type": ["boolean", "string", "null"], "default": True},
    },
    "api": {
        "label": "API route",
        "description": "auto (default): /api/v2/jupyter, then the hub bridge, then the project "
        "bridge (CoCalc's rewrite); or force v2, hub or project.",
        "schema": {"type": ["string", "null"], "enum": ["auto", "v2", "hub", "project", None]},
    },
    "timeout": {
        "label": "Read timeout (s)",
        "description": "Seconds to wait for an answer; own-project calls may need 60-90 s.",
        "schema": {"type": ["number", "null"], "default": 90},
    },
}


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "cocalc-tasks",
        "name": "CoCalc",
        "description": "Run code on CoCalc Jupyter kernels (Python, SageMath, R, bash, ...).",
        "integrations": [
            {
                "integration-name": "CoCalc",
                "external-doc-url": "https://cocalc.com",
                "tags": ["software"],
            }
        ],
        "hooks": [
            {"integration-name": "CoCalc", "python-modules": ["airflow_provider.hooks.cocalc"]}
        ],
        "operators": [
            {
                "integration-name": "CoCalc",
                "python-modules": [
                    "airflow_provider.operators.cocalc",
                    "airflow_provider.operators.job",
                    "airflow_provider.operators.notebook",
                ],
            }
        ],
        "sensors": [
            {"integration-name": "CoCalc", "python-modules": ["airflow_provider.sensors.cocalc"]}
        ],
        "triggers": [
            {"integration-name": "CoCalc", "python-modules": ["airflow_provider.triggers.cocalc"]}
        ],
        "connection-types": [
            {
                "connection-type": "cocalc",
                "hook-class-name": "airflow_provider.hooks.cocalc.CocalcHook",
                "hook-name": "CoCalc",
                "ui-field-behaviour": {
                    "hidden-fields": ["login"],
                    "relabeling": {
                        "host": "API base URL",
                        "password": "API key",
                        "schema": "Scheme",
                    },
                    "placeholders": {
                        "host": "https://cocalc.com",
                        "password": "sk-...",
                        "schema": "https (when the host has none; http for a local server)",
                        "extra": '{"project_id": "...", "verify": true, "timeout": 90}',
                    },
                },
                "conn-fields": _CONNECTION_FIELDS,
            }
        ],
        "extra-links": [
            "airflow_provider.operators.cocalc.CocalcProjectLink",
            "airflow_provider.operators.notebook.CocalcNotebookLink",
        ],
    }
