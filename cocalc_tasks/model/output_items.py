"""Output items parsed once into a small typed union; every view matches on these types.

CoCalc returns raw Jupyter IOPub ``content`` objects with a few keys stripped and no
``output_type`` (docs/cocalc-api.md §5). :func:`parse_output` classifies one by the
keys it carries:

=========================  ================================================================
key present                item
=========================  ================================================================
``traceback``/``ename``    :class:`ErrorOutput`
``name`` + ``text``        :class:`Stream`, or :class:`TruncationNotice` when CoCalc wrote it
``data``                   :class:`RichOutput` (execute_result / display_data)
``wait``                   :class:`ClearOutput`
anything else              :class:`OtherOutput`
=========================  ================================================================

Every item keeps the dict it came from as ``raw``, so a result serialises back unchanged.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "IMAGE_EXTENSIONS",
    "TRUNCATION_PREFIX",
    "ClearOutput",
    "ErrorOutput",
    "Image",
    "OtherOutput",
    "OutputItem",
    "RemoteError",
    "RichOutput",
    "Stream",
    "TruncationNotice",
    "parse_output",
    "strip_ansi",
]

_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")
#: How CoCalc's notice of cut output begins (its ``text`` is a list, and it has ``output_type``).
TRUNCATION_PREFIX = "Output truncated since it exceeded"
IMAGE_EXTENSIONS = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/gif": "gif",
    "image/webp": "webp",
    "image/svg+xml": "svg",
}


def strip_ansi(text: str) -> str:
    """Remove ANSI escape sequences (colours in tracebacks, bash prompts)."""
    return _ANSI_RE.sub("", text)


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
        return IMAGE_EXTENSIONS.get(self.mime, "bin")


@dataclass(frozen=True)
class _Item:
    #: The item exactly as the server sent it.
    raw: Mapping[str, Any] = field(repr=False, compare=False)


@dataclass(frozen=True)
class Stream(_Item):
    """Text the code wrote to ``stdout`` or ``stderr``."""

    name: str = "stdout"
    text: str = ""


@dataclass(frozen=True)
class TruncationNotice(_Item):
    """CoCalc's note that output was cut at its per-cell or total limit."""

    name: str = "stdout"
    text: str = ""


@dataclass(frozen=True)
class RichOutput(_Item):
    """A MIME bundle: an ``execute_result`` or a ``display_data``."""

    data: Mapping[str, Any] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)
    #: ``execution_count`` for an execute_result; None for display_data.
    execution_count: int | None = None

    @property
    def text(self) -> str | None:
        """The ``text/plain`` form, e.g. ``7 * 17^2``."""
        value = self.data.get("text/plain")
        return None if value is None else str(value)

    def images(self, index: int) -> list[Image]:
        """The bundle's images (base64 rasters, SVG as text), tagged with the item ``index``."""
        found = []
        for mime, value in self.data.items():
            if mime not in IMAGE_EXTENSIONS or not isinstance(value, str):
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


@dataclass(frozen=True)
class ErrorOutput(_Item):
    """The exception the remote code raised."""

    error: RemoteError = field(default_factory=lambda: RemoteError("", ""))


@dataclass(frozen=True)
class ClearOutput(_Item):
    """A ``clear_output`` marker."""

    wait: bool = False


@dataclass(frozen=True)
class OtherOutput(_Item):
    """Any other content (e.g. a shell reply the server kept)."""


OutputItem = Stream | TruncationNotice | RichOutput | ErrorOutput | ClearOutput | OtherOutput


def _text(value: Any) -> str:
    """A stream's text: a string, or the joined list of a truncation notice."""
    if isinstance(value, list):
        return "".join(str(t) for t in value)
    return str(value)


def parse_output(raw: Mapping[str, Any]) -> OutputItem:
    """Classify one raw output item (see the module's table)."""
    if "traceback" in raw or "ename" in raw:
        tb = raw.get("traceback") or []
        lines = tuple(str(x) for x in tb) if isinstance(tb, list) else (str(tb),)
        error = RemoteError(str(raw.get("ename", "")), str(raw.get("evalue", "")), lines)
        return ErrorOutput(raw, error)
    if "name" in raw and "text" in raw:
        name, text = str(raw["name"]), _text(raw["text"])
        if "output_type" in raw and text.startswith(TRUNCATION_PREFIX):
            return TruncationNotice(raw, name, text)
        return Stream(raw, name, text)
    if "data" in raw:
        data = raw["data"] if isinstance(raw["data"], Mapping) else {}
        metadata = raw.get("metadata")
        count = raw.get("execution_count")
        return RichOutput(
            raw,
            data,
            metadata if isinstance(metadata, Mapping) else {},
            count if isinstance(count, int) else None,
        )
    if "wait" in raw:
        return ClearOutput(raw, bool(raw["wait"]))
    return OtherOutput(raw)
