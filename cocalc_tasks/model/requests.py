"""``ExecuteRequest``: one execute call's parameters, checked once, with its wire body and hash.

Every layer (client, functional API, CLI, Airflow hook, Prefect tasks and cache key) builds or
passes this one object, so a new parameter is added here and nowhere else. Layers that take
keyword arguments type them as ``**options: Unpack[ExecuteOptions]``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Self, TypedDict, Unpack

from cocalc_tasks.model.errors import CocalcValidationError
from cocalc_tasks.model.hashing import compute_hash
from cocalc_tasks.model.validation import type_name, validate_project_id

__all__ = ["ExecuteOptions", "ExecuteRequest", "ProjectRequest"]


class ExecuteOptions(TypedDict, total=False):
    """The optional parameters of an execute call, for ``**options`` signatures."""

    #: Earlier inputs replayed (output discarded) before ``input``, on the same fresh kernel.
    history: Sequence[str] | None
    #: Run in this project; None for the global pool (or the client's default project).
    project_id: str | None
    #: Working directory relative to the project's home.
    path: str | None
    #: Always compute: skip the server's result cache (``noCache``).
    no_cache: bool
    #: Free-form label for the server's API log.
    tag: str | None


class ProjectRequest:
    """What the request dataclasses share: building from a mapping, and a default project."""

    project_id: str | None

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Self:
        """The request named by ``values`` (e.g. a task's inputs); other keys are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in values.items() if k in names})

    def with_default_project(self, project_id: str | None) -> Self:
        """This request, run in ``project_id`` when it names no project of its own."""
        if self.project_id is not None or project_id is None:
            return self
        return dataclasses.replace(self, project_id=project_id)  # type: ignore[type-var]


@dataclass(frozen=True)
class ExecuteRequest(ProjectRequest):
    """A validated execute request. Invalid values raise
    :class:`~cocalc_tasks.errors.CocalcValidationError` naming the argument."""

    input: str
    kernel: str
    #: Stored as a tuple, whatever sequence was given (None: no history).
    history: Sequence[str] | None = field(default=())
    project_id: str | None = None
    path: str | None = None
    no_cache: bool = False
    tag: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.kernel, str) or not self.kernel.strip():
            raise CocalcValidationError(
                f"kernel must be a non-empty string such as 'python3', got {self.kernel!r:.60}"
            )
        if not isinstance(self.input, str):
            raise CocalcValidationError(
                f"input must be a string of code, got {type_name(self.input)}"
            )
        object.__setattr__(self, "history", _history(self.history))
        if self.project_id is not None:
            validate_project_id(self.project_id)
        for name in ("path", "tag"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise CocalcValidationError(f"{name} must be a string, got {type_name(value)}")
        if not isinstance(self.no_cache, bool):
            raise CocalcValidationError(f"no_cache must be a bool, got {type_name(self.no_cache)}")

    @classmethod
    def build(cls, input: str, kernel: str, **options: Unpack[ExecuteOptions]) -> ExecuteRequest:
        """The request for ``execute(input, kernel, **options)``."""
        # An unknown option is a TypeError that names it, as for any keyword argument.
        return cls(input, kernel, **options)

    def body(self) -> dict[str, Any]:
        """The JSON body of ``POST /api/v2/jupyter/execute``: optional keys only when set."""
        body: dict[str, Any] = {"input": self.input, "kernel": self.kernel}
        if self.history:
            body["history"] = list(self.history)
        if self.project_id is not None:
            body["project_id"] = self.project_id
        if self.path is not None:
            body["path"] = self.path
        if self.no_cache:
            body["noCache"] = True
        if self.tag is not None:
            body["tag"] = self.tag
        return body

    @cached_property
    def hash(self) -> str:
        """CoCalc's content hash, the key of its result cache."""
        return compute_hash(self.input, self.kernel, self.history, self.project_id, self.path)


def _history(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise CocalcValidationError(f"history must be a list of strings, got {type_name(value)}")
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise CocalcValidationError(f"history[{index}] must be a string, got {type_name(item)}")
    return tuple(value)
