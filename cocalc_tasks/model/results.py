"""The typed result model: :class:`ExecutionResult` and :class:`KernelSpec`.

``ExecutionResult.outputs`` keeps the items exactly as received, and ``items`` is the same list
parsed once into :mod:`cocalc_tasks.model.output_items` (streams, rich bundles, errors, clear
markers, CoCalc's truncation notice). Every other attribute, and every view above this module
(reports, the CLI, Airflow, Prefect), is derived from ``items``, so ``to_dict()``/``from_dict()``
round-trip without loss.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from cocalc_tasks.model.errors import CocalcError
from cocalc_tasks.model.output_items import (
    ClearOutput,
    ErrorOutput,
    Image,
    OtherOutput,
    OutputItem,
    RemoteError,
    RichOutput,
    Stream,
    TruncationNotice,
    parse_output,
    strip_ansi,
)

# The typed output items live in cocalc_tasks.model.output_items; these names stay importable here.
__all__ = [
    "CocalcExecutionError",
    "ExecutionResult",
    "Image",
    "KernelSpec",
    "RemoteError",
    "item_kind",
    "remote_error",
    "stream_text",
    "strip_ansi",
]

_KINDS: dict[type[Any], str] = {
    ErrorOutput: "error",
    Stream: "stream",
    TruncationNotice: "stream",
    RichOutput: "data",
    ClearOutput: "clear",
    OtherOutput: "other",
}


def item_kind(item: Mapping[str, Any]) -> str:
    """Classify one raw output item: ``error``, ``stream``, ``data``, ``clear`` or ``other``.

    Kept for callers of earlier releases; match on :func:`parse_output`'s types instead.
    """
    return _KINDS[type(parse_output(item))]


def stream_text(item: Mapping[str, Any]) -> str:
    """A stream item's text (a truncation notice's list joined). Kept for earlier callers."""
    parsed = parse_output(item)
    return parsed.text if isinstance(parsed, Stream | TruncationNotice) else ""


def remote_error(item: Mapping[str, Any]) -> RemoteError:
    """The :class:`RemoteError` an error item describes. Kept for earlier callers."""
    parsed = parse_output(item)
    return parsed.error if isinstance(parsed, ErrorOutput) else RemoteError("", "")


@dataclass
class ExecutionResult:
    """The outcome of one ``execute`` call.

    A remote exception does not raise: ``ok`` is False, ``error`` describes it, and
    :meth:`raise_for_error` turns it into :class:`~cocalc_tasks.errors.CocalcExecutionError`.
    """

    outputs: list[dict[str, Any]] = field(default_factory=list)
    created: datetime | None = None
    #: The cache row id; set only when the server answered from its cache.
    cache_id: int | None = None
    kernel: str | None = None
    #: CoCalc's content hash of the request (see :func:`cocalc_tasks.compute_hash`).
    hash: str | None = None
    #: Wall time of the HTTP call in seconds, measured by the client.
    elapsed: float | None = None
    project_id: str | None = None
    path: str | None = None
    #: Which route answered: ``v2``, ``hub`` or ``project`` (see :mod:`cocalc_tasks.client.routes`).
    route: str | None = field(default=None, compare=False)

    # -- derived views -------------------------------------------------------------------------
    @cached_property
    def items(self) -> tuple[OutputItem, ...]:
        """``outputs`` parsed once into typed items, in order."""
        return tuple(parse_output(item) for item in self.outputs)

    @property
    def from_cache(self) -> bool:
        return self.cache_id is not None

    def _streams(self, name: str) -> str:
        return "".join(
            item.text
            for item in self.items
            if isinstance(item, Stream | TruncationNotice) and item.name == name
        )

    @property
    def stdout(self) -> str:
        """All stdout stream text, joined (including truncation notices)."""
        return self._streams("stdout")

    @property
    def stderr(self) -> str:
        return self._streams("stderr")

    @property
    def data(self) -> list[dict[str, Any]]:
        """The MIME bundles of rich outputs (execute_result and display_data), in order."""
        return [dict(item.data) for item in self.items if isinstance(item, RichOutput)]

    @property
    def text(self) -> str:
        """The ``text/plain`` of every rich output, one per line, e.g. ``7 * 17^2``."""
        return "\n".join(
            item.text
            for item in self.items
            if isinstance(item, RichOutput) and item.text is not None
        )

    @property
    def images(self) -> list[Image]:
        """Decoded images (PNG, JPEG, GIF, WebP as base64; SVG as text)."""
        return [
            image
            for index, item in enumerate(self.items)
            if isinstance(item, RichOutput)
            for image in item.images(index)
        ]

    @property
    def errors(self) -> list[RemoteError]:
        """Every exception the remote code raised, in order."""
        return [item.error for item in self.items if isinstance(item, ErrorOutput)]

    @property
    def error(self) -> RemoteError | None:
        """The first exception raised by the remote code, if any."""
        errors = self.errors
        return errors[0] if errors else None

    @property
    def ok(self) -> bool:
        """True when the remote code raised nothing."""
        return self.error is None

    @property
    def timed_out(self) -> bool:
        """True when the server interrupted the cell at its per-cell time limit."""
        errors = self.errors
        return bool(errors) and errors[-1].is_interrupt

    @property
    def truncated(self) -> bool:
        """True when CoCalc cut the output at its per-cell or total limit."""
        return any(isinstance(item, TruncationNotice) for item in self.items)

    def raise_for_error(self) -> ExecutionResult:
        """Raise :class:`CocalcExecutionError` if the remote code failed; else return self."""
        if not self.ok:
            raise CocalcExecutionError(self)
        return self

    def save_images(self, directory: str | Path, prefix: str = "output") -> list[Path]:
        """Write every image to ``directory`` (created if needed); return the file paths."""
        target = Path(directory)
        target.mkdir(parents=True, exist_ok=True)
        paths = []
        for number, image in enumerate(self.images):
            path = target / f"{prefix}-{number}.{image.extension}"
            path.write_bytes(image.content)
            paths.append(path)
        return paths

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.outputs)

    def __len__(self) -> int:
        return len(self.outputs)

    def to_notebook_cell(self, source: str = "", execution_count: int | None = None) -> Any:
        """This run as an nbformat v4 code cell of ``source``, its outputs typed back into
        ``stream``/``execute_result``/``display_data``/``error`` (images intact; see
        :func:`cocalc_tasks.model.notebook_cells.jupyter_outputs`)."""
        from cocalc_tasks.model.notebook_cells import code_cell, jupyter_outputs

        return code_cell(source, jupyter_outputs(self.items, execution_count), execution_count)

    # -- serialisation ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict; :meth:`from_dict` restores an equal result."""
        error = self.error
        return {
            "ok": self.ok,
            "kernel": self.kernel,
            "hash": self.hash,
            "created": self.created.isoformat() if self.created else None,
            "cache_id": self.cache_id,
            "from_cache": self.from_cache,
            "elapsed": self.elapsed,
            "project_id": self.project_id,
            "path": self.path,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "text": self.text,
            "truncated": self.truncated,
            "error": (
                {"ename": error.ename, "evalue": error.evalue, "traceback": error.traceback}
                if error
                else None
            ),
            "outputs": self.outputs,
            **({"route": self.route} if self.route is not None else {}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExecutionResult:
        """Rebuild a result from :meth:`to_dict` output (derived keys are recomputed)."""
        created = data.get("created")
        return cls(
            outputs=list(data.get("outputs") or []),
            created=datetime.fromisoformat(created) if created else None,
            cache_id=data.get("cache_id"),
            kernel=data.get("kernel"),
            hash=data.get("hash"),
            elapsed=data.get("elapsed"),
            project_id=data.get("project_id"),
            path=data.get("path"),
            route=data.get("route"),
        )

    @classmethod
    def from_response(
        cls, body: Mapping[str, Any], *, kernel: str | None = None, **context: Any
    ) -> ExecutionResult:
        """Build a result from a successful execute response body."""
        outputs = body.get("output")
        if outputs is None:
            outputs = []
        if not isinstance(outputs, list):
            raise TypeError(f"'output' must be a list, got {type(outputs).__name__}")
        cache_id = body.get("id")
        return cls(
            outputs=[dict(item) for item in outputs if isinstance(item, Mapping)],
            created=parse_created(body.get("created")),
            cache_id=int(cache_id) if isinstance(cache_id, int | str) and cache_id != "" else None,
            kernel=kernel,
            **context,
        )


def parse_created(value: object) -> datetime | None:
    """Parse CoCalc's ``created`` (a JS ISO string such as ``2023-04-25T17:09:33.551Z``)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


@dataclass(frozen=True)
class KernelSpec:
    """One entry of ``/api/v2/jupyter/kernels`` (docs/cocalc-api.md §10)."""

    name: str
    display_name: str
    language: str
    argv: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    resource_dir: str | None = None
    interrupt_mode: str | None = None
    metadata: Mapping[str, Any] | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> KernelSpec:
        argv: Sequence[Any] = data.get("argv") or ()
        return cls(
            name=str(data["name"]),
            display_name=str(data.get("display_name", data["name"])),
            language=str(data.get("language", "")),
            argv=tuple(str(a) for a in argv),
            env=dict(data.get("env") or {}),
            resource_dir=data.get("resource_dir"),
            interrupt_mode=data.get("interrupt_mode"),
            metadata=data.get("metadata"),
        )

    def to_dict(self) -> dict[str, Any]:
        """CoCalc's shape: optional keys only when set."""
        out: dict[str, Any] = {
            "name": self.name,
            "display_name": self.display_name,
            "language": self.language,
            "argv": list(self.argv),
            "env": dict(self.env),
            "resource_dir": self.resource_dir,
        }
        if self.interrupt_mode is not None:
            out["interrupt_mode"] = self.interrupt_mode
        if self.metadata is not None:
            out["metadata"] = dict(self.metadata)
        return out


class CocalcExecutionError(CocalcError):
    """The remote code raised an exception. ``result`` holds all outputs up to the error."""

    def __init__(self, result: ExecutionResult) -> None:
        self.result = result
        error = result.error
        assert error is not None, "CocalcExecutionError needs a result with an error"
        self.ename = error.ename
        self.evalue = error.evalue
        self.traceback = error.traceback
        summary = f"{error.ename}: {error.evalue}" if error.ename else f"error: {error.evalue}"
        super().__init__(f"remote code raised {summary}")

    @property
    def full_message(self) -> str:
        """The summary followed by the clean (ANSI-free) remote traceback."""
        return f"{self.message}\n{self.traceback}" if self.traceback else self.message
