"""Notebooks as pipeline steps, the papermill way, on CoCalc: :func:`run_notebook`.

A notebook runs in the project as **one async exec job** (no Jupyter cell limit applies):

1. the notebook (unless it is already in the project) and the runner script
   (:mod:`cocalc_tasks.notebooks.runner`) are uploaded with blocking execs
   (:mod:`cocalc_tasks.notebooks.transfer`, base64 pieces checked by digest);
2. the job runs the runner with the project's ``python3``, which injects the parameters and
   executes every cell with nbclient (the project needs ``nbformat`` and ``nbclient``, as any
   Jupyter installation has; the local server's ``server`` extra installs them);
3. the executed notebook comes back the same way, is validated with ``nbformat``, saved to
   ``output`` (a local path, or any fsspec URL such as ``s3://…`` when fsspec is installed) and
   returned as a :class:`NotebookResult`.

A failing cell raises :class:`~cocalc_tasks.errors.CocalcNotebookError` naming the cell and the
remote exception, after the notebook, which ends at that cell, has been saved.
"""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from cocalc_tasks.client.client import CocalcClient
from cocalc_tasks.errors import (
    CocalcNotebookError,
    CocalcUnknownKernelError,
    CocalcValidationError,
)
from cocalc_tasks.model.command_results import CommandResult, Job
from cocalc_tasks.model.exec_requests import ExecRequest
from cocalc_tasks.model.notebook_cells import cocalc_outputs
from cocalc_tasks.model.output_items import RichOutput, Stream
from cocalc_tasks.model.results import ExecutionResult, RemoteError
from cocalc_tasks.notebooks import runner as notebook_runner
from cocalc_tasks.notebooks.progress import runner_output
from cocalc_tasks.notebooks.transfer import download, upload

__all__ = [
    "PROJECT_PREFIX",
    "NotebookCell",
    "NotebookResult",
    "NotebookRun",
    "run_notebook",
    "submit_notebook",
]

log = logging.getLogger("cocalc_tasks.notebooks")

#: ``notebook="project:reports/weekly.ipynb"`` names a notebook already in the project.
PROJECT_PREFIX = "project:"
#: The job's default limit: a notebook is a long step, but not an endless one.
DEFAULT_TIMEOUT = 3600.0
_WORK = ".cocalc-tasks/notebooks"
#: Days an executed notebook stays in its work folder in the project (``<workdir>/output.ipynb``).
KEEP_DAYS = 7


@dataclass(frozen=True)
class NotebookCell:
    """One cell of an executed notebook; ``result`` reads its outputs like any run's."""

    index: int
    cell_type: str
    source: str
    tags: tuple[str, ...]
    execution_count: int | None
    result: ExecutionResult

    @property
    def value(self) -> Any:
        """What the cell produced, for a ``result`` cell: its last rich output's
        ``application/json``, else its ``text/plain`` (or printed text) read as JSON where it
        is JSON, else that text."""
        for item in reversed(self.result.items):
            if isinstance(item, RichOutput):
                if "application/json" in item.data:
                    return item.data["application/json"]
                if item.text is not None:
                    return _json_or_text(item.text)
        printed = "".join(
            i.text for i in self.result.items if isinstance(i, Stream) and i.name == "stdout"
        )
        return _json_or_text(printed.strip()) if printed else None


def _json_or_text(text: str) -> Any:
    """``text`` as JSON, or as a Python literal made of JSON's types (a ``text/plain``
    ``{'a': 1}``), or else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return json.loads(json.dumps(ast.literal_eval(text), allow_nan=False))
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return text


@dataclass
class NotebookResult:
    """An executed notebook (nbformat v4) and what a pipeline needs from it."""

    notebook: Any
    kernel: str
    output: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    job_id: str | None = None
    elapsed: float | None = None
    #: Index of the cell that raised (in :attr:`notebook`), None when every cell ran.
    failed_cell: int | None = None
    error: RemoteError | None = None

    @property
    def ok(self) -> bool:
        return self.failed_cell is None and self.error is None

    @cached_property
    def cells(self) -> list[NotebookCell]:
        out = []
        for index, cell in enumerate(self.notebook.cells):
            outputs = cocalc_outputs(cell.get("outputs", []))
            out.append(
                NotebookCell(
                    index=index,
                    cell_type=cell.cell_type,
                    source=cell.source,
                    tags=tuple(cell.get("metadata", {}).get("tags", [])),
                    execution_count=cell.get("execution_count"),
                    result=ExecutionResult(outputs=outputs, kernel=self.kernel),
                )
            )
        return out

    @property
    def results(self) -> dict[str, Any]:
        """The values of cells tagged ``result`` (see :attr:`NotebookCell.value`), keyed by
        the name in a ``result:<name>`` tag, else by the cell's index."""
        found: dict[str, Any] = {}
        for cell in self.cells:
            names = [t.split(":", 1)[1] for t in cell.tags if t.startswith("result:")]
            if names or "result" in cell.tags:
                found[names[0] if names else str(cell.index)] = cell.value
        return found

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe summary (what Airflow pushes to XCom): no outputs, no notebook."""
        return {
            "ok": self.ok,
            "output": self.output,
            "kernel": self.kernel,
            "parameters": self.parameters,
            "job_id": self.job_id,
            "elapsed": self.elapsed,
            "cells": len(self.notebook.cells),
            "failed_cell": self.failed_cell,
            "error": (
                {"ename": self.error.ename, "evalue": self.error.evalue} if self.error else None
            ),
            "results": self.results,
        }


@dataclass(frozen=True)
class NotebookRun:
    """A notebook job that was submitted: enough to collect its result later, in another
    process (an Airflow trigger's ``execute_complete``)."""

    job: Job
    workdir: str
    project_id: str
    path: str | None
    parameters: dict[str, Any]
    output: str | None

    @property
    def job_id(self) -> str:
        return self.job.job_id

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job.job_id,
            "pid": self.job.pid,
            "start": self.job.start,
            "command": self.job.command,
            "workdir": self.workdir,
            "project_id": self.project_id,
            "path": self.path,
            "parameters": self.parameters,
            "output": self.output,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NotebookRun:
        job = Job(
            job_id=data["job_id"],
            project_id=data["project_id"],
            pid=data.get("pid"),
            start=data.get("start"),
            command=data.get("command"),
        )
        return cls(
            job=job,
            workdir=data["workdir"],
            project_id=data["project_id"],
            path=data.get("path"),
            parameters=dict(data.get("parameters") or {}),
            output=data.get("output"),
        )

    def collect(self, client: CocalcClient, finished: CommandResult) -> NotebookResult:
        """Fetch the executed notebook of a finished job, save it, and return it; raise
        :class:`~cocalc_tasks.errors.CocalcNotebookError` for a failing cell."""
        import nbformat

        status = _status_line(finished.stdout)
        if status is None:
            raise CocalcNotebookError(
                f"the notebook job {self.job_id} ended ({finished.status}, exit code "
                f"{finished.exit_code}) without a result: {finished.stderr.strip()[-500:]}"
            )
        if status.get("setup"):
            self._clean(client)
            if status.get("missing"):
                base = (
                    f"{self.path!r} in the project's home (the path argument)"
                    if self.path
                    else "the project's home"
                )
                raise CocalcValidationError(
                    f"no notebook {status['missing']!r} in project {self.project_id}: "
                    f"'{PROJECT_PREFIX}' paths are relative to {base}"
                )
            if status.get("ename") == "LookupError":
                raise CocalcUnknownKernelError(str(status.get("evalue")))
            raise CocalcNotebookError(
                f"the notebook could not start: {status.get('ename')}: {status.get('evalue')}",
                ename=str(status.get("ename", "")),
                evalue=str(status.get("evalue", "")),
            )
        data = download(
            client,
            f"{self.workdir}/output.ipynb",
            size=int(status["size"]),
            sha256=str(status["sha256"]),
            project_id=self.project_id,
            path=self.path,
        )
        self._clean(client)
        notebook = nbformat.reads(data.decode("utf-8"), as_version=4)
        nbformat.validate(notebook)
        saved = save_notebook(data, self.output) if self.output else None
        failed = status.get("cell") if not status.get("ok") else None
        result = NotebookResult(
            notebook=notebook,
            kernel=str(status.get("kernel")),
            output=saved,
            parameters=self.parameters,
            job_id=self.job_id,
            elapsed=status.get("seconds"),
            failed_cell=failed,
            error=None
            if status.get("ok")
            else RemoteError(str(status.get("ename", "")), str(status.get("evalue", ""))),
        )
        if not result.ok:
            where = f"cell {failed}" if failed is not None else "a cell"
            raise CocalcNotebookError(
                f"{where} of the notebook raised {status.get('ename')}: {status.get('evalue')}"
                + (f"; the executed notebook up to it is saved at {saved}" if saved else ""),
                cell=failed,
                ename=str(status.get("ename", "")),
                evalue=str(status.get("evalue", "")),
                output=saved,
                result=result,
            )
        return result

    def _clean(self, client: CocalcClient) -> None:
        """Remove the runner and the uploaded notebook; keep the executed notebook for
        :data:`KEEP_DAYS` days (the local server's job page renders it), and remove the work
        folders of runs older than that."""
        script = (
            'rm -f -- "$1/runner.py" "$1/input.ipynb"; '
            'find "$2" -mindepth 1 -maxdepth 1 -type d -mtime +"$3" -exec rm -rf -- {} +'
        )
        try:
            client.exec(
                "bash",
                ["-c", script, "clean", self.workdir, _WORK, str(KEEP_DAYS)],
                project_id=self.project_id,
                path=self.path,
            )
        except Exception as exc:  # leftovers are harmless; say so and go on
            log.warning("could not clean %s in the project: %s", self.workdir, exc)


def _status_line(stdout: str) -> dict[str, Any] | None:
    for line in reversed(stdout.splitlines()):
        if line.startswith(notebook_runner.STATUS_PREFIX):
            value = json.loads(line[len(notebook_runner.STATUS_PREFIX) :])
            return value if isinstance(value, dict) else None
    return None


def save_notebook(data: bytes, target: str) -> str:
    """Write the notebook's bytes to a local path or an fsspec URL; returns where."""
    if "://" in target and not target.startswith("file://"):
        try:
            import fsspec
        except ImportError:
            raise CocalcValidationError(
                f"saving to {target} needs fsspec (and its driver for that scheme)"
            ) from None
        with fsspec.open(target, "wb") as handle:
            handle.write(data)
        return target
    path = Path(target.removeprefix("file://")).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return str(path)


def _notebook_bytes(notebook: Any) -> bytes | None:
    """The notebook to upload, or None for one already in the project."""
    import nbformat

    if isinstance(notebook, Mapping):
        node = nbformat.from_dict(notebook)
        nbformat.validate(node)
        text: str = nbformat.writes(node)
        return text.encode("utf-8")
    if isinstance(notebook, str) and notebook.startswith(PROJECT_PREFIX):
        return None
    path = Path(notebook).expanduser()
    if not path.is_file():
        raise CocalcValidationError(
            f"no notebook at {str(path)!r}; for one in the project, pass "
            f"'{PROJECT_PREFIX}{notebook}'"
        )
    data = path.read_bytes()
    try:
        nbformat.validate(nbformat.reads(data.decode("utf-8"), as_version=4))
    except Exception as exc:
        raise CocalcValidationError(f"{path} is not a valid notebook: {exc}") from None
    return data


def notebook_workdir(job_key: str | None = None) -> str:
    """The work folder of a run in the project: derived from ``job_key`` when there is one (a
    second submit with the key then sends the same command, and a re-attaching caller knows
    where the run's files are), else new."""
    if job_key:
        return f"{_WORK}/{hashlib.sha256(job_key.encode()).hexdigest()[:32]}"
    return f"{_WORK}/{uuid.uuid4().hex}"


def submit_notebook(
    client: CocalcClient,
    notebook: Any,
    *,
    parameters: Mapping[str, Any] | None = None,
    kernel: str | None = None,
    project_id: str | None = None,
    path: str | None = None,
    output: str | None = None,
    timeout: float | None = None,
    job_key: str | None = None,
) -> NotebookRun:
    """Upload and start a notebook job; returns at once (see :func:`run_notebook`).

    ``job_key``: where the server honours keys (CoCalc's rewrite), a second submit with the
    same key returns the job the first one started instead of a new one. The work folder is
    then derived from the key, so that the second submit's command is the first one's."""
    project = project_id or client.project_id
    if not project:
        raise CocalcValidationError("a notebook runs in a project: pass project_id")
    params = dict(parameters or {})
    notebook_runner.render_parameters(params, "python")  # refused here, before any upload
    data = _notebook_bytes(notebook)
    workdir = notebook_workdir(job_key)
    runner = Path(notebook_runner.__file__).read_bytes()
    upload(client, runner, f"{workdir}/runner.py", project_id=project, path=path)
    if data is not None:
        digest = upload(client, data, f"{workdir}/input.ipynb", project_id=project, path=path)
        source = f"{workdir}/input.ipynb"
    else:
        digest, source = None, str(notebook)[len(PROJECT_PREFIX) :]
    spec = {
        "input": source,
        "output": f"{workdir}/output.ipynb",
        "kernel": kernel,
        "parameters": params if parameters is not None else None,
        "sha256": digest,
    }
    request = ExecRequest.build(
        "python3",
        [f"{workdir}/runner.py", json.dumps(spec)],
        project_id=project,
        path=path,
        timeout=timeout or DEFAULT_TIMEOUT,
    )
    job = client.submit_request(request, job_key=job_key)
    log.info("notebook job %s started in project %s", job.job_id, project)
    return NotebookRun(job, workdir, project, path, params, output)


def run_notebook(
    notebook: Any,
    *,
    parameters: Mapping[str, Any] | None = None,
    kernel: str | None = None,
    project_id: str | None = None,
    path: str | None = None,
    output: str | None = None,
    timeout: float | None = None,
    client: CocalcClient | None = None,
    api_key: str | None = None,
    host: str | None = None,
    on_output: Callable[[str, str], None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> NotebookResult:
    """Run a notebook in a CoCalc project, papermill-style, and return it executed.

    Args:
        notebook: a local ``.ipynb`` path, an ``nbformat`` node (or dict), or
            ``"project:<path>"`` for a notebook already in the project.
        parameters: injected papermill's way into an ``injected-parameters`` cell after the
            cell tagged ``parameters`` (or first), in the kernel's language (Python, Sage, R,
            bash).
        kernel: default the notebook's kernelspec (mapped through the server's aliases).
        project_id: the project to run in (default the client's).
        path: the working directory in the project (default its home).
        output: where to save the executed notebook: a local path or an fsspec URL.
        timeout: seconds the whole run may take (default one hour); no per-cell limit.
        on_output: called with ``(stream, text)`` for what the job prints besides its
            progress (a kernel's own stderr, say).
        on_progress: called with ``(code cells done, code cells in all)`` after each cell.
    """
    owned = client is None
    client = client if client is not None else CocalcClient(api_key=api_key, host=host)
    try:
        started = time.monotonic()
        run = submit_notebook(
            client,
            notebook,
            parameters=parameters,
            kernel=kernel,
            project_id=project_id,
            path=path,
            output=output,
            timeout=timeout,
        )
        shown = runner_output(on_output, on_progress)
        finished = client.wait(run.job, on_output=shown, poll_interval=0.5)
        result = run.collect(client, finished)
        log.info("notebook ran in %.1f s (job %s)", time.monotonic() - started, run.job_id)
        return result
    finally:
        if owned:
            client.close()
