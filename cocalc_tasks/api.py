"""The functional surface: ``execute_code``, ``list_kernels``, and the exec API's
``run_command``, ``run_script``, ``submit_command``, ``wait_for_job`` and ``cancel_job``.

They are thin wrappers over :class:`~cocalc_tasks.client.client.CocalcClient`, in the manner of
``requests.get`` over ``requests.Session``. Pass ``client=`` to reuse a connection; otherwise
a client is built from ``api_key``/``host`` (or the ``COCALC_*`` environment) and closed after
the call. These are the functions the CLI, Airflow and Prefect layers call.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Unpack

from cocalc_tasks.client.client import CocalcClient
from cocalc_tasks.client.exec_calls import Deadline, OutputCallback
from cocalc_tasks.model.command_results import CommandResult, Job, JobStatus
from cocalc_tasks.model.exec_requests import ExecOptions
from cocalc_tasks.model.identity import Whoami
from cocalc_tasks.model.requests import ExecuteOptions
from cocalc_tasks.model.results import ExecutionResult, KernelSpec

__all__ = [
    "cancel_job",
    "execute_code",
    "list_kernels",
    "run_command",
    "run_script",
    "submit_command",
    "wait_for_job",
    "whoami",
]


@contextmanager
def _client_for(
    client: CocalcClient | None, api_key: str | None, host: str | None
) -> Iterator[CocalcClient]:
    if client is not None:
        yield client
        return
    with CocalcClient(api_key=api_key, host=host) as own:
        yield own


def execute_code(
    input: str,
    kernel: str,
    *,
    api_key: str | None = None,
    host: str | None = None,
    client: CocalcClient | None = None,
    **options: Unpack[ExecuteOptions],
) -> ExecutionResult:
    """Run code on a CoCalc kernel and return its outputs.

    ``options``: ``history``, ``project_id``, ``path``, ``no_cache``, ``tag``
    (see :class:`~cocalc_tasks.model.requests.ExecuteOptions`).

    >>> execute_code("print(2+3)", kernel="python3").stdout  # doctest: +SKIP
    '5\\n'
    """
    with _client_for(client, api_key, host) as c:
        return c.execute(input, kernel, **options)


def list_kernels(
    project_id: str | None = None,
    *,
    api_key: str | None = None,
    host: str | None = None,
    client: CocalcClient | None = None,
) -> list[KernelSpec]:
    """List the kernels of the global pool, or of ``project_id``."""
    with _client_for(client, api_key, host) as c:
        return c.kernels(project_id)


def whoami(
    *,
    api_key: str | None = None,
    host: str | None = None,
    project_id: str | None = None,
    client: CocalcClient | None = None,
) -> Whoami:
    """What the server takes the key for (an unknown key raises ``CocalcAuthError``).

    >>> whoami(host="http://127.0.0.1:8765", api_key="sk-...").describe()  # doctest: +SKIP
    'an account key (account 6c1e...), from the api_key argument, accepted by http://...'
    """
    with _client_for(client, api_key, host) as c:
        return c.whoami(project_id)


def run_command(
    command: str,
    args: Sequence[str] | None = None,
    *,
    err_on_exit: bool = True,
    api_key: str | None = None,
    host: str | None = None,
    client: CocalcClient | None = None,
    **options: Unpack[ExecOptions],
) -> CommandResult:
    """Run a shell command in a project and wait for it (``CocalcClient.exec``).

    >>> run_command("echo", ["hi"], project_id=PROJECT).stdout  # doctest: +SKIP
    'hi\\n'
    """
    with _client_for(client, api_key, host) as c:
        return c.exec(command, args, err_on_exit=err_on_exit, **options)


def run_script(
    code: str,
    interpreter: str = "python3",
    args: Sequence[str] = (),
    *,
    err_on_exit: bool = True,
    api_key: str | None = None,
    host: str | None = None,
    client: CocalcClient | None = None,
    **options: Unpack[ExecOptions],
) -> CommandResult:
    """Run code with an interpreter in a project (``CocalcClient.run_script``).

    >>> run_script("factor(2^255-1)", "sage", project_id=PROJECT).stdout  # doctest: +SKIP
    '7 * 31 * 103 * ...'
    """
    with _client_for(client, api_key, host) as c:
        return c.run_script(code, interpreter, args, err_on_exit=err_on_exit, **options)


def submit_command(
    command: str,
    args: Sequence[str] | None = None,
    *,
    api_key: str | None = None,
    host: str | None = None,
    client: CocalcClient | None = None,
    **options: Unpack[ExecOptions],
) -> Job:
    """Start a command as an async job (``CocalcClient.submit``)."""
    with _client_for(client, api_key, host) as c:
        return c.submit(command, args, **options)


def wait_for_job(
    job: str | Job,
    *,
    project_id: str | None = None,
    deadline: Deadline = None,
    on_output: OutputCallback | None = None,
    api_key: str | None = None,
    host: str | None = None,
    client: CocalcClient | None = None,
) -> CommandResult:
    """Wait for a job to finish (``CocalcClient.wait``)."""
    with _client_for(client, api_key, host) as c:
        return c.wait(job, project_id=project_id, deadline=deadline, on_output=on_output)


def cancel_job(
    job: str | Job,
    *,
    project_id: str | None = None,
    api_key: str | None = None,
    host: str | None = None,
    client: CocalcClient | None = None,
) -> JobStatus:
    """Kill a running job (``CocalcClient.cancel``)."""
    with _client_for(client, api_key, host) as c:
        return c.cancel(job, project_id=project_id)
