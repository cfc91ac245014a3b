"""CocalcExecuteOperator and CocalcListKernelsOperator.

The operators are thin: the hook talks to CoCalc, and :mod:`cocalc_tasks.reporting` formats
the log lines and the compact XCom value. A remote exception fails the task without Airflow retries
(it would fail the same way again); transient errors (connection, timeout, quota, 5xx) raise
normally so that ``retries`` apply.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from airflow.providers.common.compat.sdk import AirflowFailException, BaseOperator, BaseOperatorLink

from airflow_provider.hooks.cocalc import CocalcHook
from cocalc_tasks.errors import CocalcError, CocalcExecutionError
from cocalc_tasks.reporting import DEFAULT_MAX_CHARS

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from cocalc_tasks.model import ExecutionResult

__all__ = ["CocalcExecuteOperator", "CocalcListKernelsOperator", "CocalcProjectLink"]

PROJECT_URL_KEY = "cocalc_project_url"


class CocalcProjectLink(BaseOperatorLink):
    """A link to the CoCalc project the task ran in (when it had a ``project_id``)."""

    name = "CoCalc project"

    def get_link(self, operator: BaseOperator, *, ti_key: Any) -> str:
        from airflow.sdk.execution_time.xcom import XCom

        return str(XCom.get_value(key=PROJECT_URL_KEY, ti_key=ti_key) or "")


def read_code_file(operator: BaseOperator, code_file: str) -> str:
    """The content of ``code_file`` (relative paths: the DAG's folder), never rendered."""
    path = Path(code_file)
    if not path.is_absolute():
        folder = getattr(getattr(operator, "dag", None), "folder", None)
        path = Path(folder or ".") / path
    return path.read_text(encoding="utf-8")


def open_links(context: Context, *keys: str) -> None:
    """Push every link's key empty, first thing: a link is read when the task ends, failed or
    not, and a key never pushed makes Airflow log ``XCom not found`` after the real error."""
    for key in keys or (PROJECT_URL_KEY,):
        context["ti"].xcom_push(key=key, value="")


def job_key(context: Context) -> str:
    """The ``job_key`` of this task instance's job: the same for every try of it, so that a
    retry after a crash between submit and record attaches to the running job where the server
    supports keys (CoCalc's rewrite)."""
    ti = context["ti"]
    return f"airflow/{ti.dag_id}/{ti.task_id}/{ti.run_id}/{ti.map_index}"


def project_url(hook: CocalcHook, project_id: str | None, job_id: str | None = None) -> str:
    """The extra link: the job's page on a cocalc-tasks server, else the project's page (as on
    cocalc.com); empty without a project."""
    return hook.client.page_url(project_id, job_id) if project_id else ""


def fail(error: CocalcError) -> NoReturn:
    """Raise Airflow's view of ``error``: permanent errors skip the task's retries.

    A transient error is raised as it is (its own traceback, no cause chained to itself); a
    permanent one becomes ``AirflowFailException`` caused by it.
    """
    if error.transient:
        raise error
    message = error.full_message if isinstance(error, CocalcExecutionError) else str(error)
    raise AirflowFailException(message) from error


class CocalcExecuteOperator(BaseOperator):
    """Run code on a CoCalc Jupyter kernel; the outputs go to the task log and to XCom.

    Args:
        input: The code. Templated, so Jinja syntax in it is rendered; use ``code_file`` for
            code that should be sent exactly as written.
        code_file: Path to a file with the code (relative paths: the DAG's folder). The path
            is templated; the file's content is sent as is, never rendered.
        kernel: Kernel name, e.g. ``python3`` or ``sage-10.4``.
        history: Earlier inputs replayed before ``input`` (their output is discarded).
        project_id: Run in this project (default: the connection's, else the global pool).
        path: Working directory relative to the project's home.
        no_cache: Always compute, bypassing CoCalc's result cache.
        tag: Free-form label for CoCalc's API log.
        fail_on_error: Fail the task when the remote code raises (default). When False, the
            result (with its ``error``) is returned instead.
        save_images_to: A folder or object-storage URL (``s3://``, ``gs://``, ``file://``)
            for the images; XCom then holds their paths, never image data.
        max_xcom_chars: Cap per text field in the XCom value.
        cocalc_conn_id: The ``cocalc`` connection.
    """

    template_fields: Sequence[str] = (
        "input",
        "kernel",
        "history",
        "project_id",
        "path",
        "tag",
        "code_file",
        "save_images_to",
    )
    template_fields_renderers = {"input": "py", "history": "json"}
    ui_color = "#4474c4"
    ui_fgcolor = "#fff"
    operator_extra_links = (CocalcProjectLink(),)

    def __init__(
        self,
        *,
        kernel: str,
        input: str | None = None,
        code_file: str | None = None,
        history: Sequence[str] | None = None,
        project_id: str | None = None,
        path: str | None = None,
        no_cache: bool = False,
        tag: str | None = None,
        fail_on_error: bool = True,
        save_images_to: str | None = None,
        max_xcom_chars: int = DEFAULT_MAX_CHARS,
        cocalc_conn_id: str = CocalcHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if (input is None) == (code_file is None):
            raise ValueError("CocalcExecuteOperator needs exactly one of input= or code_file=")
        self.input = input
        self.code_file = code_file
        self.kernel = kernel
        self.history = history
        self.project_id = project_id
        self.path = path
        self.no_cache = no_cache
        self.tag = tag
        self.fail_on_error = fail_on_error
        self.save_images_to = save_images_to
        self.max_xcom_chars = max_xcom_chars
        self.cocalc_conn_id = cocalc_conn_id
        #: What the call did, for OpenLineage (set by ``execute``).
        self._lineage: dict[str, str | None] = {}
        self._hook: CocalcHook | None = None

    @property
    def hook(self) -> CocalcHook:
        if self._hook is None:
            self._hook = CocalcHook(self.cocalc_conn_id)
        return self._hook

    def _code(self) -> str:
        return self.input if self.input is not None else read_code_file(self, str(self.code_file))

    def execute(self, context: Context) -> dict[str, Any]:
        from cocalc_tasks.model import ExecuteRequest

        open_links(context)
        hook = self.hook
        project_id = self.project_id or hook.project_id
        try:
            request = ExecuteRequest(
                self._code(),
                self.kernel,
                self.history,
                project_id,
                self.path,
                self.no_cache,
                self.tag,
            )
            result = hook.send(request)
        except CocalcError as exc:
            fail(exc)
        self._log(result)
        self._lineage = {"project_id": project_id, "status": "ok" if result.ok else "error"}
        # Always pushed (empty without a project): the link is resolved at task end.
        context["ti"].xcom_push(key=PROJECT_URL_KEY, value=project_url(hook, project_id))
        paths = self._save_images(result, context) if self.save_images_to else []
        if not result.ok and self.fail_on_error:
            fail(CocalcExecutionError(result))
        from cocalc_tasks.reporting import compact_dict

        return compact_dict(result, max_chars=self.max_xcom_chars, image_paths=paths)

    def _log(self, result: ExecutionResult) -> None:
        from cocalc_tasks.reporting import log_records

        source = "cache" if result.from_cache else "computed"
        self.log.info(
            "CoCalc kernel %s answered (%s) in %.2f s", self.kernel, source, result.elapsed or 0.0
        )
        for level, message in log_records(result, self.max_xcom_chars):
            getattr(self.log, level)("%s", message)

    def _save_images(self, result: ExecutionResult, context: Context) -> list[str]:
        """Write images under ``save_images_to/<dag>/<run>/<task>[-<map>]/``."""
        from airflow.sdk import ObjectStoragePath

        ti = context["ti"]
        suffix = f"-{ti.map_index}" if getattr(ti, "map_index", -1) not in (-1, None) else ""
        base = (
            ObjectStoragePath(str(self.save_images_to))
            / ti.dag_id
            / ti.run_id
            / (f"{ti.task_id}{suffix}")
        )
        base.mkdir(parents=True, exist_ok=True)
        paths = []
        for number, image in enumerate(result.images):
            target = base / f"output-{number}.{image.extension}"
            target.write_bytes(image.content)
            paths.append(str(target))
        self.log.info("saved %d image(s) under %s", len(paths), base)
        return paths

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage facets of the call: the kernel, the project and the outcome
        (:mod:`airflow_provider.lineage`)."""
        from airflow_provider.lineage import operator_lineage

        done = self._lineage
        return operator_lineage(
            self.hook.base_url,
            done.get("project_id") or self.project_id or self.hook.project_id,
            kernel=self.kernel,
            status=done.get("status"),
        )

    def on_kill(self) -> None:
        """Abort the HTTP request in flight. CoCalc has no cancel endpoint: the remote cell
        stops at the server's per-cell limit."""
        if self._hook is not None:
            self._hook.client.abort()


class CocalcListKernelsOperator(BaseOperator):
    """Push the available kernels to XCom: ``{"names": [...], "kernels": [spec, ...]}``."""

    template_fields: Sequence[str] = ("project_id",)

    def __init__(
        self,
        *,
        project_id: str | None = None,
        cocalc_conn_id: str = CocalcHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.project_id = project_id
        self.cocalc_conn_id = cocalc_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        hook = CocalcHook(self.cocalc_conn_id)
        try:
            kernels = hook.list_kernels(self.project_id)
        except CocalcError as exc:
            fail(exc)
        self.log.info("kernels: %s", ", ".join(k.name for k in kernels))
        return {"names": [k.name for k in kernels], "kernels": [k.to_dict() for k in kernels]}
