"""The typed result model: :class:`ExecutionResult`, :class:`RemoteError`, :class:`KernelSpec`.

CoCalc returns raw Jupyter IOPub ``content`` objects with a few keys stripped and no
``output_type`` (docs/cocalc-api.md §5). Items are classified by the keys they carry:

=====================  ==============================================
key present            kind
=====================  ==============================================
``traceback``/``ename``  error
``name`` + ``text``    stream (``text`` is a list in a truncation notice)
``data``               rich output (execute_result / display_data)
``wait``               clear-output marker
=====================  ==============================================

``ExecutionResult.outputs`` keeps the items exactly as received; every other attribute is
derived from them, so ``to_dict()``/``from_dict()`` round-trip without loss.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cocalc_tasks.errors import CocalcExecutionError

__all__ = [
    "ExecutionResult",
    "Image",
    "KernelSpec",
    "RemoteError",
    "item_kind",
    "remote_error",
    "stream_text",
    "strip_ansi",
]

_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")
TRUNCATION_PREFIX = "Output truncated since it exceeded"
_IMAGE_EXTENSIONS = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/gif": "gif",
    "image/webp": "webp",
    "image/svg+xml": "svg",
}

OutputItem = dict[str, Any]


def strip_ansi(text: str) -> str:
    """Remove ANSI escape sequences (colours in tracebacks, bash prompts)."""
    return _ANSI_RE.sub("", text)


def item_kind(item: Mapping[str, Any]) -> str:
    """Classify one output item: ``error``, ``stream``, ``data``, ``clear`` or ``other``."""
    if "traceback" in item or "ename" in item:
        return "error"
    if "name" in item and "text" in item:
        return "stream"
    if "data" in item:
        return "data"
    if "wait" in item:
        return "clear"
    return "other"


def stream_text(item: Mapping[str, Any]) -> str:
    """A stream item's text: a string, or the joined list of a truncation notice."""
    text = item.get("text", "")
    if isinstance(text, list):
        return "".join(str(t) for t in text)
    return str(text)


def remote_error(item: Mapping[str, Any]) -> RemoteError:
    """The :class:`RemoteError` described by an error item."""
    tb = item.get("traceback") or []
    lines = tuple(str(x) for x in tb) if isinstance(tb, list) else (str(tb),)
    return RemoteError(
        ename=str(item.get("ename", "")),
        evalue=str(item.get("evalue", "")),
        raw_traceback=lines,
    )


def _is_truncation_notice(item: Mapping[str, Any]) -> bool:
    return "output_type" in item and stream_text(item).startswith(TRUNCATION_PREFIX)


@dataclass(frozen=True)
class RemoteError:
    """An exception raised by the remote code (an ``error`` output item)."""

    ename: str
    evalue: str
    #: The traceback as the kernel sent it: a list of lines with ANSI colour codes.
    raw_traceback: tuple[str, ...] = ()

    @property
    def traceback(self) -> str:
        """The traceback as plain text, ANSI codes removed."""
        return strip_ansi("\n".join(self.raw_traceback))

    @property
    def is_interrupt(self) -> bool:
        """True for CoCalc's per-cell timeout: a ``KeyboardInterrupt`` with an empty value."""
        return self.ename == "KeyboardInterrupt" and not self.evalue

    def __str__(self) -> str:
        return f"{self.ename}: {self.evalue}" if self.ename else self.evalue


@dataclass(frozen=True)
class Image:
    """One decoded image from a rich output item."""

    mime: str
    content: bytes
    #: Position of the item in ``ExecutionResult.outputs``.
    index: int

    @property
    def extension(self) -> str:
        return _IMAGE_EXTENSIONS.get(self.mime, "bin")


@dataclass
class ExecutionResult:
    """The outcome of one ``execute`` call.

    A remote exception does not raise: ``ok`` is False, ``error`` describes it, and
    :meth:`raise_for_error` turns it into :class:`~cocalc_tasks.errors.CocalcExecutionError`.
    """

    outputs: list[OutputItem] = field(default_factory=list)
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

    # -- derived views -------------------------------------------------------------------------
    @property
    def from_cache(self) -> bool:
        return self.cache_id is not None

    def _streams(self, name: str) -> str:
        return "".join(
            stream_text(item)
            for item in self.outputs
            if item_kind(item) == "stream" and item.get("name") == name
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
        return [dict(item["data"]) for item in self.outputs if item_kind(item) == "data"]

    @property
    def text(self) -> str:
        """The ``text/plain`` of every rich output, one per line, e.g. ``7 * 17^2``."""
        return "\n".join(
            str(bundle["text/plain"]) for bundle in self.data if "text/plain" in bundle
        )

    @property
    def images(self) -> list[Image]:
        """Decoded images (PNG, JPEG, GIF, WebP as base64; SVG as text)."""
        found: list[Image] = []
        for index, item in enumerate(self.outputs):
            if item_kind(item) != "data":
                continue
            for mime, value in item["data"].items():
                if mime not in _IMAGE_EXTENSIONS or not isinstance(value, str):
                    continue
                if mime == "image/svg+xml":
                    content = value.encode("utf-8")
                else:
                    try:
                        content = base64.b64decode(value, validate=False)
                    except (binascii.Error, ValueError):
                        continue
                found.append(Image(mime=mime, content=content, index=index))
        return found

    @property
    def error(self) -> RemoteError | None:
        """The first exception raised by the remote code, if any."""
        for item in self.outputs:
            if item_kind(item) == "error":
                return remote_error(item)
        return None

    @property
    def ok(self) -> bool:
        """True when the remote code raised nothing."""
        return self.error is None

    @property
    def timed_out(self) -> bool:
        """True when the server interrupted the cell at its per-cell time limit."""
        errors = [item for item in self.outputs if item_kind(item) == "error"]
        if not errors:
            return False
        last = errors[-1]
        return last.get("ename") == "KeyboardInterrupt" and not last.get("evalue")

    @property
    def truncated(self) -> bool:
        """True when CoCalc cut the output at its per-cell or total limit."""
        return any(_is_truncation_notice(item) for item in self.outputs)

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

    def __iter__(self) -> Iterator[OutputItem]:
        return iter(self.outputs)

    def __len__(self) -> int:
        return len(self.outputs)

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
