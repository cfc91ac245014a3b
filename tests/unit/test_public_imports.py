"""Every name users import, from where the guide documents it: moving a module must not break
a user's ``import``. A name removed from this list is a breaking change, made on purpose.

The Airflow and Prefect names are pinned in their own suites (``tests/airflow/test_provider.py``,
``tests/prefect/test_tasks.py``), in the environments that have those frameworks.
"""

from __future__ import annotations

import importlib
from importlib.metadata import distribution

import pytest

PUBLIC: dict[str, tuple[str, ...]] = {
    "cocalc_tasks": (
        "CocalcApiDisabledError",
        "CocalcAuthError",
        "CocalcBadRequestError",
        "CocalcCapabilityError",
        "CocalcClient",
        "CocalcCommandError",
        "CocalcCommandTimeoutError",
        "CocalcConnectionError",
        "CocalcError",
        "CocalcExecutionError",
        "CocalcKernelDiedError",
        "CocalcKernelError",
        "CocalcNotebookError",
        "CocalcPermissionError",
        "CocalcQuotaError",
        "CocalcServerError",
        "CocalcTimeoutError",
        "CocalcUnknownJobError",
        "CocalcUnknownKernelError",
        "CocalcUnsupportedError",
        "CocalcValidationError",
        "CommandResult",
        "ExecRequest",
        "ExecuteRequest",
        "ExecutionResult",
        "Image",
        "Job",
        "JobStat",
        "JobStatus",
        "KernelSession",
        "KernelSpec",
        "NotebookCell",
        "NotebookResult",
        "RemoteError",
        "cancel_job",
        "compute_hash",
        "error_from_message",
        "execute_code",
        "list_kernels",
        "run_command",
        "run_notebook",
        "run_script",
        "submit_command",
        "wait_for_job",
        "Whoami",
        "whoami",
    ),
    "cocalc_tasks.errors": (
        "CocalcError",
        "CocalcExecutionError",
        "CocalcCommandError",
        "CocalcCommandTimeoutError",
        "CocalcNotebookError",
        "error_from_message",
    ),
    "cocalc_tasks.output_items": (
        "ClearOutput",
        "ErrorOutput",
        "Image",
        "OtherOutput",
        "OutputItem",
        "RemoteError",
        "RichOutput",
        "Stream",
        "TruncationNotice",
        "parse_output",
        "strip_ansi",
    ),
    "cocalc_tasks.client": ("CocalcClient", "KernelSession", "poll_job", "DEFAULT_HOST"),
    "cocalc_tasks.model": (
        "CommandResult",
        "ExecRequest",
        "ExecuteRequest",
        "ExecutionResult",
        "Job",
        "JobStatus",
        "KernelSpec",
    ),
    "cocalc_tasks.notebooks": (
        "NotebookCell",
        "NotebookResult",
        "NotebookRun",
        "run_notebook",
        "submit_notebook",
    ),
    "cocalc_tasks.reporting": (
        "OutputLines",
        "command_dict",
        "command_markdown",
        "compact_dict",
        "log_records",
        "to_markdown",
    ),
    "cocalc_tasks.testing": ("LocalServer", "local_server"),
    "cocalc_tasks.testing.airflow": ("configure", "connection_env", "migrate"),
    "cocalc_tasks.testing.prefect": ("credentials", "offline_environment"),
    "cocalc_tasks.server.process": ("LocalServer",),
    "cocalc_tasks.server.local_server": ("LocalServer",),
    "cocalc_tasks.server.settings": ("ServerSettings", "SettingsError", "settings_from_args"),
}


@pytest.mark.parametrize(("module", "names"), PUBLIC.items(), ids=list(PUBLIC))
def test_documented_names_import_from_where_the_guide_says(
    module: str, names: tuple[str, ...]
) -> None:
    loaded = importlib.import_module(module)
    missing = [name for name in names if getattr(loaded, name, None) is None]
    assert missing == []
    listed = getattr(loaded, "__all__", None)
    if listed is not None:
        assert set(names) <= set(listed), f"{module}.__all__ lacks {set(names) - set(listed)}"


def test_the_top_level_list_is_exactly_the_pinned_one() -> None:
    """A name added to ``cocalc_tasks.__all__`` is added here too, so it is a decision."""
    import cocalc_tasks

    assert sorted(cocalc_tasks.__all__) == sorted(PUBLIC["cocalc_tasks"])


def test_moved_paths_give_the_same_objects() -> None:
    from cocalc_tasks import ExecutionResult
    from cocalc_tasks.model.results import ExecutionResult as defined_result
    from cocalc_tasks.output_items import Stream
    from cocalc_tasks.server.local_server import LocalServer as defined_server
    from cocalc_tasks.server.process import LocalServer as documented_server
    from cocalc_tasks.testing import LocalServer

    assert ExecutionResult is defined_result
    assert LocalServer is defined_server is documented_server
    assert Stream.__module__ == "cocalc_tasks.model.output_items"


ENTRY_POINTS = {
    ("console_scripts", "cocalc-tasks"): "cocalc_tasks.cli:main",
    ("jupyter_client.kernel_provisioners", "cocalc-tasks"): (
        "cocalc_tasks.server.processes.zygotes:ForkingProvisioner"
    ),
    ("pytest11", "cocalc_tasks"): "cocalc_tasks.testing.plugin",
    ("apache_airflow_provider", "provider_info"): (
        "airflow_provider.get_provider_info:get_provider_info"
    ),
    ("prefect.collections", "cocalc_tasks"): "prefect_tasks",
}


def test_entry_points_are_declared_and_the_core_ones_load() -> None:
    declared = {(ep.group, ep.name): ep for ep in distribution("cocalc-tasks").entry_points}
    assert {key: declared[key].value for key in ENTRY_POINTS if key in declared} == ENTRY_POINTS
    for group in ("console_scripts", "jupyter_client.kernel_provisioners", "pytest11"):
        (key,) = [k for k in ENTRY_POINTS if k[0] == group]
        assert declared[key].load() is not None
