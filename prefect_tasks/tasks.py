"""Prefect tasks: ``execute_code``, ``aexecute_code`` and ``list_kernels``.

Defaults suit code execution, which is not idempotent:
- ``cache_policy=NO_CACHE``; opt in to :data:`COCALC_CONTENT_HASH` to cache by CoCalc's hash;
- ``retries=2`` with :func:`retry_on_transient`: only errors the core marks transient
  (connection, timeout, quota, 5xx) are retried; a remote exception never is;
- ``persist_result=False``.

Outputs go to the run logger (ANSI stripped); the remote exception and its traceback fail the
task. The return value is the :class:`ExecutionResult` (or a compact dict with ``as_dict=True``);
it never holds the API key.
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import Callable, Sequence
from typing import Any

from prefect import State, Task, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE, CachePolicy
from prefect.context import TaskRunContext

from cocalc_tasks import CocalcError, CocalcExecutionError, ExecutionResult
from cocalc_tasks.model import ExecuteRequest
from cocalc_tasks.reporting import compact_dict, log_records, to_markdown
from prefect_tasks.credentials import CocalcCredentials

__all__ = [
    "COCALC_CONTENT_HASH",
    "aexecute_code",
    "execute_code",
    "list_kernels",
    "retry_on_transient",
]


def retry_on_transient(task: Task[..., Any], task_run: Any, state: State[Any]) -> bool:
    """Retry condition: True only for errors that may go away (``CocalcError.transient``)."""
    try:
        state.result()
    except CocalcError as exc:
        return bool(exc.transient)
    except Exception:
        return False
    return False


class CocalcContentHash(CachePolicy):
    """Cache key = CoCalc's content hash of the request, the server URL and the return shape.

    A call with ``no_cache=True`` is never cached, and ``as_dict`` is part of the key, so a
    call that asks for a dict is never handed a cached ``ExecutionResult`` (or the reverse).
    """

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        credentials: CocalcCredentials = inputs["credentials"]
        request = ExecuteRequest.from_mapping(inputs)
        if request.no_cache:
            return None
        request = request.with_default_project(credentials.project_id)
        host = re.sub(r"[^a-z0-9]+", "-", credentials.host.lower())
        shape = "dict" if inputs.get("as_dict") else "result"
        return f"cocalc-{host}-{request.hash}-{shape}"


#: Opt-in cache policy: ``execute_code.with_options(cache_policy=COCALC_CONTENT_HASH)``.
COCALC_CONTENT_HASH = CocalcContentHash()

#: The options of every CoCalc task (the job tasks reuse them).
TASK_OPTIONS: dict[str, Any] = {
    "cache_policy": NO_CACHE,
    "persist_result": False,
    "retries": 2,
    "retry_delay_seconds": [2, 10],
    "retry_jitter_factor": 0.5,
    "retry_condition_fn": retry_on_transient,
    "task_run_name": "cocalc-{kernel}",
}


def _execute_code(
    credentials: CocalcCredentials,
    input: str,
    kernel: str,
    history: Sequence[str] | None = None,
    project_id: str | None = None,
    path: str | None = None,
    no_cache: bool = False,
    tag: str | None = None,
    artifact_key: str | None = None,
    fail_on_error: bool = True,
    as_dict: bool = False,
) -> ExecutionResult | dict[str, Any]:
    """Run code on a CoCalc kernel.

    Args:
        credentials: A :class:`CocalcCredentials` block.
        input: The code.
        kernel: Kernel name, e.g. ``python3`` or ``sage-10.4``.
        history: Earlier inputs replayed before ``input`` (output discarded).
        project_id: Run in this project (default: the block's, else the global pool).
        path: Working directory relative to the project's home.
        no_cache: Bypass CoCalc's server-side result cache.
        tag: Free-form label for CoCalc's API log.
        artifact_key: Create a markdown artifact with the outputs under this key
            (lowercase letters, digits and dashes).
        fail_on_error: Fail the task when the remote code raises (default).
        as_dict: Return a compact JSON-safe dict instead of the ExecutionResult.

    Returns:
        The :class:`ExecutionResult`, or its compact dict.

    Example:
        ```python
        from prefect import flow
        from prefect_tasks import CocalcCredentials, execute_code

        @flow
        def factor() -> str:
            credentials = CocalcCredentials.load("BLOCK_NAME")
            return execute_code(credentials, "factor(2023)", kernel="sage-10.4").text
        ```
    """
    request = ExecuteRequest(input, kernel, history, project_id, path, no_cache, tag)
    with credentials.get_client() as client:
        result = client.send(request)
    logger = get_run_logger()
    source = "cache" if result.from_cache else "computed"
    logger.info(
        "CoCalc kernel %s answered (%s) in %.2f s", result.kernel, source, result.elapsed or 0.0
    )
    for level, message in log_records(result):
        getattr(logger, level)("%s", message)
    if artifact_key is not None:
        # _sync: this always runs synchronously (in a worker thread for aexecute_code), where
        # Prefect's dispatch would otherwise hand back a coroutine because the task is async.
        create_markdown_artifact(
            markdown=to_markdown(result, title=f"CoCalc: {result.kernel}"),
            key=artifact_key,
            description=f"Outputs of a CoCalc {result.kernel} run",
            _sync=True,  # type: ignore[call-arg]
        )
    if not result.ok and fail_on_error:
        raise CocalcExecutionError(result)
    return compact_dict(result) if as_dict else result


def _public(name: str, fn: Callable[..., Any], doc: str | None = None) -> Callable[..., Any]:
    """``fn`` under its public name: Prefect names a task, and its ``task_key``, after the
    function's ``__qualname__``, which the UI, the API and the logs show."""
    fn.__name__ = fn.__qualname__ = name
    if doc is not None:
        fn.__doc__ = doc
    return fn


@functools.wraps(_execute_code)
def _sync(*args: Any, **kwargs: Any) -> ExecutionResult | dict[str, Any]:
    return _execute_code(*args, **kwargs)


@functools.wraps(_execute_code)
async def _async(*args: Any, **kwargs: Any) -> ExecutionResult | dict[str, Any]:
    return await asyncio.to_thread(_execute_code, *args, **kwargs)


execute_code = task(**TASK_OPTIONS)(_public("execute_code", _sync))
aexecute_code = task(**TASK_OPTIONS)(
    _public(
        "aexecute_code",
        _async,
        """The async twin of :func:`execute_code`, with the same parameters.

    The whole call (HTTP, logging, the artifact) runs in a worker thread, so the event loop is
    never blocked and a task ``timeout_seconds`` cancels the wait at once.
    """,
    )
)


@task(
    cache_policy=NO_CACHE,
    persist_result=False,
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=retry_on_transient,
)
def list_kernels(credentials: CocalcCredentials, project_id: str | None = None) -> list[str]:
    """Names of the kernels of the global pool, or of ``project_id``."""
    with credentials.get_client() as client:
        kernels = client.kernels(project_id)
    get_run_logger().info("kernels: %s", ", ".join(k.name for k in kernels))
    return [k.name for k in kernels]
