"""CocalcNotebookOperator: a parameterised notebook run on CoCalc, papermill-style.

The notebook runs in the project as one exec job (:func:`cocalc_tasks.notebooks.run.run_notebook`:
no Jupyter cell limit). The operator uploads it and starts the job, then waits on the worker
(each finished cell logged) or, with ``deferrable=True``, through the same
:class:`~airflow_provider.triggers.cocalc.CocalcJobTrigger` as ``CocalcRunOperator``, freeing
the worker slot. The executed notebook is saved to ``output``; its path and the values of the
cells tagged ``result`` go to XCom.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import (
    AirflowFailException,
    BaseOperator,
    BaseOperatorLink,
    conf,
)

from airflow_provider.hooks.cocalc import CocalcHook
from airflow_provider.operators.cocalc import (
    PROJECT_URL_KEY,
    CocalcProjectLink,
    fail,
    job_key,
    open_links,
)
from airflow_provider.operators.job import (
    DEADLINE_MARGIN,
    CocalcJobStep,
    defer_to_trigger,
    raise_for_event,
)
from cocalc_tasks.errors import (
    CocalcError,
    CocalcNotebookError,
    CocalcUnknownJobError,
    CocalcValidationError,
)

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from cocalc_tasks.notebooks import NotebookResult, NotebookRun

__all__ = ["NOTEBOOK_URL_KEY", "CocalcNotebookLink", "CocalcNotebookOperator", "collect_notebook"]

#: XCom key of the executed notebook's URL, when ``output`` is an http(s) URL.
NOTEBOOK_URL_KEY = "cocalc_notebook_url"
#: XCom key of the submitted run (job id, work folder, output), read when the trigger fires.
NOTEBOOK_RUN_KEY = "cocalc_notebook_run"


def collect_notebook(
    client: Any, run: NotebookRun, finished: Any, context: Context, log: Any
) -> dict[str, Any]:
    """Save the executed notebook of a finished run, log it and return its XCom summary; a
    failing cell raises ``AirflowFailException`` (after the notebook up to it was saved).
    The notebook operator and the sensor share it."""
    try:
        result = run.collect(client, finished)
    except CocalcNotebookError as exc:
        _push_link(exc.output, context)
        raise AirflowFailException(str(exc)) from exc
    _push_link(result.output, context)
    _log_result(result, log)
    return result.to_dict()


def _push_link(output: str | None, context: Context) -> None:
    if output and output.startswith(("http://", "https://")):
        context["ti"].xcom_push(key=NOTEBOOK_URL_KEY, value=output)


def _log_result(result: NotebookResult, log: Any) -> None:
    log.info(
        "executed %d cells in %.1f s; saved to %s",
        len(result.notebook.cells),
        result.elapsed or 0.0,
        result.output or "(nowhere: no output given)",
    )
    for name, value in result.results.items():
        log.info("result %s = %r", name, value)


class CocalcNotebookLink(BaseOperatorLink):
    """A link to the executed notebook, when it was saved to an http(s) URL."""

    name = "Executed notebook"

    def get_link(self, operator: BaseOperator, *, ti_key: Any) -> str:
        from airflow.sdk.execution_time.xcom import XCom

        return str(XCom.get_value(key=NOTEBOOK_URL_KEY, ti_key=ti_key) or "")


class CocalcNotebookOperator(CocalcJobStep):
    """Run a notebook in a CoCalc project with injected parameters.

    Args:
        notebook: A local ``.ipynb`` (relative paths: the DAG's folder) or
            ``project:<path>`` for a notebook in the project. Templated.
        parameters: Values injected after the cell tagged ``parameters``. Templated.
        output: Where to save the executed notebook: a local path or an fsspec URL
            (``s3://...``, ``https://...`` where fsspec can write it). Templated.
        kernel: Kernel (default: the notebook's kernelspec, through the server's aliases).
        project_id: The project (default: the connection's).
        path: Working directory in the project.
        timeout: Seconds the whole run may take (default one hour); cells have no limit.
        deferrable: Wait in the triggerer (default: ``[operators] default_deferrable``).
        poll_interval: Seconds between polls of the job.
        wait_for_completion: False: start the run and return its record (``job_id``,
            ``project_id``, work folder, output) at once; a
            :class:`~airflow_provider.sensors.cocalc.CocalcJobSensor` given that value waits,
            saves the executed notebook and returns what this operator would.
        cocalc_conn_id: The ``cocalc`` connection.

    Returns (XCom ``return_value``): ``output``, ``results`` (the values of the cells tagged
    ``result``), ``ok``, ``kernel``, ``parameters``, ``job_id``, ``elapsed``, ``cells``. A
    failing cell fails the task (without retries: it would fail again) after the notebook up
    to it was saved. A retry after a worker crash re-attaches to the running notebook job
    (Airflow 3.3+, ``ResumableJobMixin``; and on servers that honour job keys, by its key).
    """

    # ``output`` is kept as ``output_path``: BaseOperator.output is the task's XComArg.
    template_fields: Sequence[str] = ("notebook", "parameters", "output_path", "project_id", "path")
    template_fields_renderers = {"parameters": "json"}
    ui_color = "#f37726"
    operator_extra_links = (CocalcProjectLink(), CocalcNotebookLink())
    #: Key of the run in the task state store; never rename (in-flight retries read it).
    external_id_key = "cocalc_notebook_run"

    def __init__(
        self,
        *,
        notebook: str,
        parameters: Mapping[str, Any] | None = None,
        output: str | None = None,
        kernel: str | None = None,
        project_id: str | None = None,
        path: str | None = None,
        timeout: float = 3600.0,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float = 5.0,
        wait_for_completion: bool = True,
        cocalc_conn_id: str = CocalcHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if poll_interval <= 0:
            raise ValueError(f"poll_interval must be positive, got {poll_interval!r}")
        self.notebook = notebook
        self.parameters = parameters
        self.output_path = output
        self.kernel = kernel
        self.project_id = project_id
        self.path = path
        self.timeout = timeout
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.wait_for_completion = wait_for_completion
        self.cocalc_conn_id = cocalc_conn_id
        self._run: NotebookRun | None = None
        self._result: dict[str, Any] | None = None

    def _source(self) -> str:
        from pathlib import Path

        from cocalc_tasks.notebooks import PROJECT_PREFIX

        if self.notebook.startswith(PROJECT_PREFIX) or Path(self.notebook).is_absolute():
            return self.notebook
        folder = getattr(getattr(self, "dag", None), "folder", None)
        return str(Path(folder or ".") / self.notebook)

    def execute(self, context: Context) -> Any:
        open_links(context, PROJECT_URL_KEY, NOTEBOOK_URL_KEY)
        try:
            if not self.wait_for_completion:  # the job key still stops a retry running it twice
                return self.submit_job(context)
            return self.execute_resumable(context)
        except CocalcError as exc:
            fail(exc)

    # -- the steps: submit, or re-attach (ResumableJobMixin drives these, as for the run
    # operator; the stored id is the run's record, which collecting the notebook needs) ----
    def submit_job(self, context: Context) -> dict[str, Any]:
        from cocalc_tasks.notebooks import submit_notebook

        hook = self.hook
        run = self._run = submit_notebook(
            hook.client,
            self._source(),
            parameters=self.parameters,
            kernel=self.kernel,
            project_id=self.project_id or hook.project_id,
            path=self.path,
            output=self.output_path,
            timeout=self.timeout,
            job_key=job_key(context),
        )
        self.link_job(context, run.project_id, run.job_id)
        context["ti"].xcom_push(key=NOTEBOOK_RUN_KEY, value=run.to_dict())
        self.log.info("notebook job %s started", run.job_id)
        return run.to_dict()

    def get_job_status(self, external_id: Any, context: Context) -> str:
        """The run's job status, or ``"unknown"`` when the server no longer has it."""
        run = self._stored(external_id)
        try:
            status = self.hook.client.job(run.job_id, project_id=run.project_id)
        except CocalcUnknownJobError:
            return "unknown"
        self._run = run
        self.link_job(context, run.project_id, run.job_id)
        context["ti"].xcom_push(key=NOTEBOOK_RUN_KEY, value=run.to_dict())  # for the trigger
        return status.status

    def poll_until_complete(self, external_id: Any, context: Context) -> Any:
        """Wait for the run (or defer), then collect it once (see the run operator's)."""
        from cocalc_tasks.notebooks.progress import runner_output
        from cocalc_tasks.reporting import OutputLines

        run = self._run = self._stored(external_id)
        if self.deferrable:
            job = {"job_id": run.job_id, "project_id": run.project_id}
            defer_to_trigger(
                self,
                context,
                job,
                job_timeout=self.timeout,
                kwargs={"run": run.to_dict()},
                notebook=True,
            )
        deadline = time.time() + float(self.timeout) + DEADLINE_MARGIN
        lines = OutputLines.to_logger(self.log)
        self.hook.client.wait(
            run.job,
            on_output=runner_output(lines.feed, None),  # progress lines; no protocol
            poll_interval=self.poll_interval,
            deadline=deadline - time.time(),
        )
        lines.flush()
        return self.get_job_result(external_id, context)

    def get_job_result(self, external_id: Any, context: Context) -> dict[str, Any]:
        run = self._run = self._stored(external_id)
        if self._result is not None and self._result.get("job_id") == run.job_id:
            return self._result
        status = self.hook.client.job(run.job_id, project_id=run.project_id)
        self._result = collect_notebook(self.hook.client, run, status.result(), context, self.log)
        return self._result

    def _stored(self, external_id: Any) -> NotebookRun:
        from cocalc_tasks.notebooks import NotebookRun

        if not isinstance(external_id, Mapping) or not external_id.get("job_id"):
            raise CocalcValidationError(f"not a stored notebook run: {external_id!r:.200}")
        return NotebookRun.from_dict(external_id)

    def execute_complete(
        self, context: Context, event: dict[str, Any], run: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        from cocalc_tasks.notebooks import NotebookRun

        if run is None:  # resumed without the deferral's kwargs (dag.test runs triggers in line)
            run = context["ti"].xcom_pull(task_ids=self.task_id, key=NOTEBOOK_RUN_KEY)
        self._run = NotebookRun.from_dict(run or {})
        raise_for_event(self.hook.client, event, self.log, what="notebook job")
        try:
            return self.get_job_result(run, context)
        except CocalcError as exc:
            fail(exc)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage facets: the notebook and its executed copy as datasets, the job as the
        run (:mod:`airflow_provider.lineage`)."""
        from airflow_provider.lineage import dataset, operator_lineage

        base, result = self.hook.base_url, self._result or {}
        project = self._run.project_id if self._run else self.project_id or self.hook.project_id
        output = result.get("output") or self.output_path
        return operator_lineage(
            base,
            project,
            job_id=self._run.job_id if self._run else None,
            kernel=result.get("kernel") or self.kernel,
            status="completed" if result.get("ok") else None,
            inputs=[dataset(self._source(), base, project)],
            outputs=[dataset(str(output), base, project)] if output else [],
        )

    def recorded_job(self, context: Context) -> tuple[str, str] | None:
        run = context["ti"].xcom_pull(task_ids=self.task_id, key=NOTEBOOK_RUN_KEY)
        if isinstance(run, Mapping) and run.get("job_id"):
            return str(run["job_id"]), str(run.get("project_id"))
        return None

    def on_kill(self) -> None:
        """Cancel the notebook's job (SIGTERM to the task, or its ``execution_timeout``)."""
        if self._run is None:
            return
        status = CocalcHook(self.cocalc_conn_id).client.cancel(
            self._run.job_id, project_id=self._run.project_id
        )
        self.log.info("cancelled notebook job %s: %s", self._run.job_id, status.status)
