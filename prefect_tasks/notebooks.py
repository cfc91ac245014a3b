"""A Prefect task that runs a parameterised notebook on CoCalc: ``run_notebook``.

The notebook runs in the project as one exec job (:func:`cocalc_tasks.notebooks.run.run_notebook`),
each finished cell is logged, and a markdown artifact links the executed notebook and lists the
values of its cells tagged ``result``. The task returns the
:class:`~cocalc_tasks.notebooks.run.NotebookResult`, so the next task reads
``result.results["total"]``. A failing cell raises
:class:`~cocalc_tasks.errors.CocalcNotebookError` (never retried: it would fail again) after
the notebook up to that cell was saved. The job is recorded on the flow run, so
:func:`~prefect_tasks.jobs.cancel_cocalc_jobs` cancels it with the flow, and a later try of
the same task call (a retry, or a new process after a worker died) attaches to it instead of
running the notebook again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact

from cocalc_tasks.notebooks import NotebookResult, NotebookRun, submit_notebook
from cocalc_tasks.notebooks.run import notebook_workdir
from prefect_tasks.credentials import CocalcCredentials
from prefect_tasks.jobs import (
    record_job,
    run_logger,
    started_job,
    task_call,
    task_job_key,
    wait_job,
)
from prefect_tasks.tasks import TASK_OPTIONS

__all__ = ["notebook_markdown", "run_notebook"]


def notebook_markdown(result: NotebookResult, page: str | None = None) -> str:
    """The artifact: where the executed notebook is, the job's page, and the ``result``
    values."""
    where = result.output or "(not saved: pass output=)"
    link = f"[{where}]({where})" if "://" in where else f"`{where}`"
    lines = [
        "### CoCalc notebook",
        "",
        f"- executed notebook: {link}",
        *([f"- page: [{page}]({page})"] if page else []),
        f"- kernel: `{result.kernel}`, {len(result.notebook.cells)} cells, "
        f"{result.elapsed or 0:.1f} s, job `{result.job_id}`",
        f"- parameters: `{json.dumps(result.parameters)}`",
        "",
    ]
    if result.results:
        lines += ["| result | value |", "|---|---|"]
        for name, value in result.results.items():
            shown = json.dumps(value).replace("|", "\\|")
            lines.append(f"| `{name}` | `{shown}` |")
    return "\n".join(lines) + "\n"


@task(**{**TASK_OPTIONS, "task_run_name": "cocalc-notebook"})
def run_notebook(
    credentials: CocalcCredentials,
    notebook: Any,
    parameters: Mapping[str, Any] | None = None,
    *,
    output: str | None = None,
    kernel: str | None = None,
    project_id: str | None = None,
    path: str | None = None,
    timeout: float | None = None,
    artifact_key: str | None = "cocalc-notebook",
) -> NotebookResult:
    """Run ``notebook`` (a local path, an nbformat node, or ``project:<path>``) with
    ``parameters`` in a CoCalc project; see :func:`cocalc_tasks.notebooks.run.run_notebook`."""
    call, key = task_call(), task_job_key()
    with credentials.get_client() as client:
        earlier = started_job(credentials, call)
        if earlier is not None:  # an earlier try of this call started it: attach to it
            run = NotebookRun(
                earlier,
                notebook_workdir(key),
                earlier.project_id,
                path,
                dict(parameters or {}),
                output,
            )
        else:
            run = submit_notebook(
                client,
                notebook,
                parameters=parameters,
                kernel=kernel,
                project_id=project_id,
                path=path,
                output=output,
                timeout=timeout,
                job_key=key,
            )
            record_job(run.job, call=call)
            run_logger().info("notebook job %s started", run.job_id)
        # Whatever ends this wait leaves the job running: the next try attaches to it.
        finished = wait_job(credentials, run.job, poll_interval=1.0)
        result = run.collect(client, finished)
        page = client.page_url(run.project_id, run.job_id)
    if artifact_key is not None:
        create_markdown_artifact(
            markdown=notebook_markdown(result, page),
            key=artifact_key,
            description="Executed notebook and its result values",
        )
    return result
