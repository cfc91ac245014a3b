"""Output items, the typed union every view matches on (defined in
:mod:`cocalc_tasks.model.output_items`; importable here, where the guide names them)."""

from __future__ import annotations

from cocalc_tasks.model.output_items import (
    IMAGE_EXTENSIONS,
    TRUNCATION_PREFIX,
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
