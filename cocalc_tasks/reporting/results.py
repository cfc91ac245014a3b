"""Framework-agnostic presentation of results: log lines, compact summaries, markdown.

The Airflow operator and the Prefect tasks both call these, so a result looks the same in a
task log, an XCom, a flow-run log and an artifact.
"""

from __future__ import annotations

import base64
import binascii
import html
from collections.abc import Iterator, Sequence
from typing import Any

from cocalc_tasks.model.output_items import (
    IMAGE_EXTENSIONS,
    ErrorOutput,
    OutputItem,
    RichOutput,
    Stream,
    TruncationNotice,
    strip_ansi,
)
from cocalc_tasks.model.results import ExecutionResult

__all__ = ["DEFAULT_MAX_CHARS", "compact_dict", "log_records", "to_markdown"]

#: Per-text-field cap in compact summaries: keeps an XCom or a Prefect result in the tens of KB.
DEFAULT_MAX_CHARS = 20_000

#: Images a markdown report can embed as data URIs (SVG is text, not base64).
_RASTERS = tuple(mime for mime in IMAGE_EXTENSIONS if mime != "image/svg+xml")


def cut(text: str, max_chars: int) -> str:
    """``text`` cut to ``max_chars`` with a marker saying how much was dropped."""
    if len(text) <= max_chars:
        return text
    return text[:max_chars] + f"\n... [{len(text) - max_chars} more characters cut]"


def log_records(
    result: ExecutionResult, max_chars: int = DEFAULT_MAX_CHARS
) -> Iterator[tuple[str, str]]:
    """``(level, message)`` pairs describing the outputs, ANSI codes stripped, in order.

    Levels are ``info`` for stdout and results, ``warning`` for stderr and truncation, and
    ``error`` for the remote exception with its traceback.
    """
    for item in result.items:
        match item:
            case TruncationNotice(name=name, text=text):
                yield "warning", f"[{name}] {text}"
            case Stream(name=name, text=text):
                level = "warning" if name == "stderr" else "info"
                label = "stderr" if name == "stderr" else "stdout"
                yield level, f"[{label}] {cut(strip_ansi(text).rstrip(), max_chars)}"
            case RichOutput(data=data):
                if item.text is not None:
                    yield "info", f"[result] {cut(strip_ansi(item.text), max_chars)}"
                others = sorted(set(data) - {"text/plain"})
                if others:
                    yield "info", f"[display] {', '.join(others)}"
    error = result.error
    if error is not None:
        yield "error", f"[error] {error}\n{cut(error.traceback, max_chars)}"


def _compact_item(item: OutputItem, max_chars: int, image_refs: Sequence[str]) -> Any:
    """One raw item kept small; each image MIME type takes the next of ``image_refs``."""
    raw = item.raw
    match item:
        case Stream() if isinstance(raw.get("text"), str):
            return {**raw, "text": cut(item.text, max_chars)}
        case RichOutput(data=data):
            refs = iter(image_refs)
            small = {}
            for mime, value in data.items():
                if mime in IMAGE_EXTENSIONS and isinstance(value, str):
                    small[mime] = next(refs, f"<{mime}: {_size(value)} bytes omitted>")
                elif isinstance(value, str):
                    small[mime] = cut(value, max_chars)
                else:
                    small[mime] = value
            return {**raw, "data": small}
        case ErrorOutput(error=error):
            lines = [cut(line, max_chars) for line in error.raw_traceback[:200]]
            return {**raw, "traceback": lines}
    return dict(raw)


def _size(b64: str) -> int:
    try:
        return len(base64.b64decode(b64, validate=False))
    except (binascii.Error, ValueError):
        return len(b64)


def compact_dict(
    result: ExecutionResult,
    *,
    max_chars: int = DEFAULT_MAX_CHARS,
    image_paths: Sequence[str] = (),
) -> dict[str, Any]:
    """``result.to_dict()`` kept small: long texts cut with a marker, images never inlined.

    Image data is replaced by the matching entry of ``image_paths`` (in ``result.images``
    order) when given, else by a ``<mime: N bytes omitted>`` note. ``ExecutionResult.from_dict``
    still reads the result back.
    """
    summary = result.to_dict()
    for key in ("stdout", "stderr", "text"):
        summary[key] = cut(summary[key], max_chars)
    if summary["error"]:
        summary["error"]["traceback"] = cut(summary["error"]["traceback"], max_chars)
    refs: dict[int, list[str]] = {}
    for image, path in zip(result.images, image_paths, strict=False):
        refs.setdefault(image.index, []).append(str(path))
    summary["outputs"] = [
        _compact_item(item, max_chars, refs.get(index, []))
        for index, item in enumerate(result.items)
    ]
    summary["images"] = [str(p) for p in image_paths]
    return summary


def to_markdown(
    result: ExecutionResult,
    *,
    title: str = "CoCalc execution",
    max_chars: int = DEFAULT_MAX_CHARS,
    max_image_bytes: int = 200_000,
) -> str:
    """A markdown report: outputs in order, the error, and small images as data URIs."""
    status = "ok" if result.ok else f"failed: `{result.error}`"
    lines = [
        f"## {title}",
        "",
        f"kernel `{result.kernel}` · {status} · "
        f"{'cache hit' if result.from_cache else 'computed'}"
        + (f" · {result.elapsed:.2f} s" if result.elapsed is not None else ""),
        "",
    ]
    for item in result.items:
        match item:
            case Stream(name=name, text=text) | TruncationNotice(name=name, text=text):
                lines += [f"**{name}**", "```", cut(strip_ansi(text), max_chars).rstrip(), "```"]
            case RichOutput(data=data):
                image = next((m for m in _RASTERS if m in data), None)
                if image and len(data[image]) <= max_image_bytes:
                    lines.append(f"![output](data:{image};base64,{data[image]})")
                elif image:
                    lines.append(f"*({image}, {_size(data[image])} bytes, not embedded)*")
                elif item.text is not None:
                    lines += ["```", cut(strip_ansi(item.text), max_chars), "```"]
            case ErrorOutput(error=error):
                lines += [
                    f"**error** `{html.escape(error.ename)}`",
                    "```",
                    cut(error.traceback, max_chars),
                    "```",
                ]
    return "\n".join(lines) + "\n"
