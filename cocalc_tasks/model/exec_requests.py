"""``ExecRequest``: one shell command for CoCalc's ``/api/v2/exec``, checked once.

The same object serves a blocking call, an async job (``submit``), the CLI's ``run`` and the
Airflow and Prefect job steps, as :class:`~cocalc_tasks.model.requests.ExecuteRequest` does for
Jupyter calls. Layers that take keyword arguments type them as
``**options: Unpack[ExecOptions]``.

``err_on_exit`` is always sent as ``false``: CoCalc then returns stdout, stderr and the real
exit code of a failed command (with ``true`` master throws stdout away), and the client decides
whether a non-zero exit raises (``CommandResult.raise_for_status``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict, Unpack

from cocalc_tasks.model.errors import CocalcValidationError
from cocalc_tasks.model.requests import ProjectRequest
from cocalc_tasks.model.scripts import script_command
from cocalc_tasks.model.validation import type_name, validate_project_id

__all__ = ["ExecOptions", "ExecRequest", "script_request", "validate_job_id"]

#: CoCalc's default command timeout, in seconds, when a request sends none.
DEFAULT_EXEC_TIMEOUT = 60.0


class ExecOptions(TypedDict, total=False):
    """The optional parameters of an exec call, for ``**options`` signatures."""

    #: Run in this project (required by CoCalc; default: the client's project).
    project_id: str | None
    #: Working directory, relative to the project's home.
    path: str | None
    #: Seconds before CoCalc kills the command's process group; 0 for no limit; default 60.
    timeout: float | None
    #: Characters kept of stdout and of stderr, each (default: none for blocking calls,
    #: 1 MiB for jobs).
    max_output: int | None
    #: Run ``command`` as a bash script. CoCalc also does so when there are no ``args`` and
    #: the command contains whitespace.
    bash: bool | None
    #: Variables added to (or overriding) the project's environment.
    env: Mapping[str, str] | None


@dataclass(frozen=True)
class ExecRequest(ProjectRequest):
    """A validated exec request; invalid values raise
    :class:`~cocalc_tasks.errors.CocalcValidationError` naming the argument."""

    command: str
    args: Sequence[str] | None = None
    project_id: str | None = None
    path: str | None = None
    timeout: float | None = None
    max_output: int | None = None
    bash: bool | None = None
    env: Mapping[str, str] | None = None
    #: How logs and errors name the command (not sent); default: the command line.
    label: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.command, str) or not self.command.strip():
            raise CocalcValidationError(
                f"command must be a non-empty string, got {self.command!r:.60}"
            )
        _no_nul("command", self.command)
        if self.args is not None:
            object.__setattr__(self, "args", _args(self.args))
        if self.project_id is not None:
            validate_project_id(self.project_id)
        if self.path is not None:
            if not isinstance(self.path, str):
                raise CocalcValidationError(f"path must be a string, got {type_name(self.path)}")
            _no_nul("path", self.path)
        if self.timeout is not None:
            if isinstance(self.timeout, bool) or not isinstance(self.timeout, int | float):
                raise CocalcValidationError(
                    f"timeout must be a number of seconds, got {type_name(self.timeout)}"
                )
            if not math.isfinite(self.timeout) or self.timeout < 0:
                raise CocalcValidationError(
                    f"timeout must be 0 (no limit) or a positive number of seconds, "
                    f"got {self.timeout!r}"
                )
        if self.max_output is not None and (
            isinstance(self.max_output, bool)
            or not isinstance(self.max_output, int)
            or self.max_output < 1
        ):
            raise CocalcValidationError(
                f"max_output must be a positive number of characters, got {self.max_output!r:.60}"
            )
        if self.bash is not None and not isinstance(self.bash, bool):
            raise CocalcValidationError(f"bash must be a bool, got {type_name(self.bash)}")
        if self.env is not None:
            object.__setattr__(self, "env", _env(self.env))

    @classmethod
    def build(
        cls, command: str, args: Sequence[str] | None = None, **options: Unpack[ExecOptions]
    ) -> ExecRequest:
        """The request for ``exec(command, args, **options)``."""
        return cls(command, args, **options)

    def require_project(self) -> str:
        if self.project_id is None:
            raise CocalcValidationError(
                "project_id is required: CoCalc runs commands only in a project "
                "(pass project_id=, or set COCALC_PROJECT_ID)"
            )
        return self.project_id

    @property
    def effective_timeout(self) -> float:
        """The command's time limit as CoCalc applies it (0: none)."""
        return DEFAULT_EXEC_TIMEOUT if self.timeout is None else float(self.timeout)

    @property
    def display(self) -> str:
        """The label, or the command line (shortened), for logs and messages."""
        if self.label is not None:
            return self.label
        line = " ".join([self.command, *(self.args or ())])
        return line if len(line) <= 200 else line[:199] + "…"

    def body(self, *, async_call: bool = False) -> dict[str, Any]:
        """The JSON body of ``POST /api/v2/exec``: optional keys only when set."""
        body: dict[str, Any] = {"project_id": self.require_project(), "command": self.command}
        if self.args:
            body["args"] = list(self.args)
        if self.path is not None:
            body["path"] = self.path
        if self.timeout is not None:
            body["timeout"] = self.timeout
        if self.max_output is not None:
            body["max_output"] = self.max_output
        if self.bash is not None:
            body["bash"] = self.bash
        if self.env:
            body["env"] = dict(self.env)
        body["err_on_exit"] = False
        if async_call:
            body["async_call"] = True
        return body


def script_request(
    code: str,
    interpreter: str = "python3",
    args: Sequence[str] = (),
    **options: Unpack[ExecOptions],
) -> ExecRequest:
    """The request that runs ``code`` with ``interpreter`` (see :mod:`cocalc_tasks.model.scripts`),
    labelled ``"<interpreter> script (N lines)"`` in logs and errors."""
    command = script_command(code, interpreter, args)
    lines = code.count("\n") + (not code.endswith("\n"))
    label = f"{interpreter} script ({lines} line{'s' if lines != 1 else ''})"
    return dataclasses.replace(ExecRequest.build(command, None, **options), bash=True, label=label)


def validate_job_id(job_id: object) -> str:
    if not isinstance(job_id, str) or not job_id.strip() or len(job_id) > 8192:
        raise CocalcValidationError(f"job_id must be a non-empty string, got {job_id!r:.60}")
    if any(ord(c) < 32 for c in job_id):
        raise CocalcValidationError(f"job_id contains a control character: {job_id!r:.60}")
    return job_id


def _no_nul(name: str, value: str) -> None:
    if "\x00" in value:
        raise CocalcValidationError(f"{name} contains a NUL character, which no program accepts")


def _args(value: object) -> tuple[str, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise CocalcValidationError(f"args must be a list of strings, got {type_name(value)}")
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise CocalcValidationError(f"args[{index}] must be a string, got {type_name(item)}")
        _no_nul(f"args[{index}]", item)
    return tuple(value)


def _env(value: object) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise CocalcValidationError(f"env must be a mapping of strings, got {type_name(value)}")
    env: dict[str, str] = {}
    for name, item in value.items():
        if not isinstance(name, str) or not name or "=" in name or "\x00" in name:
            raise CocalcValidationError(f"env has an invalid variable name: {name!r:.60}")
        if not isinstance(item, str):
            raise CocalcValidationError(f"env[{name!r}] must be a string, got {type_name(item)}")
        _no_nul(f"env[{name!r}]", item)
        env[name] = item
    return env
