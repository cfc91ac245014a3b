"""CoCalc's output filtering and limits (``run_cell`` in ``jupyter-run.ts``).

Each IOPub ``content`` loses the keys ``execution_state``, ``execution_count``, ``payload``,
``code``, ``status`` and ``source`` and every empty-object field; items that end up empty are
dropped; ``clear_output`` empties what was collected before it; comm messages are skipped.
Past the per-cell or total character limit, items become truncation notices. Tracebacks are
always kept.

One deviation, documented: CoCalc emits one notice per truncated item; we emit one notice per
run of truncated items, so that a 100 MB flood does not turn into thousands of notices.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["OutputCollector", "OutputLimits", "filter_content"]

_STRIPPED_KEYS = ("execution_state", "execution_count", "payload", "code", "status", "source")


def filter_content(content: dict[str, Any]) -> dict[str, Any]:
    """Apply CoCalc's per-item filter; an empty dict means "drop this item"."""
    return {
        key: value
        for key, value in content.items()
        if key not in _STRIPPED_KEYS and not (isinstance(value, dict) and not value)
    }


@dataclass
class OutputLimits:
    max_output_per_cell: int
    max_output: int
    #: Characters counted so far across the cells of one call (shared by its cells).
    total_output: int = 0


def _notice(text: str) -> dict[str, Any]:
    return {"name": "stdout", "output_type": "stream", "text": [text]}


@dataclass
class OutputCollector:
    """Collects the filtered items of one cell under the call's limits."""

    limits: OutputLimits
    items: list[dict[str, Any]] = field(default_factory=list)
    cell_chars: int = 0

    def add(self, msg_type: str, content: dict[str, Any]) -> None:
        if "comm_id" in content or msg_type.startswith("comm_"):
            return
        if msg_type == "clear_output":
            self.items = []
        item = filter_content(content)
        if not item:
            return
        size = len(json.dumps(item, separators=(",", ":"), ensure_ascii=False))
        self.limits.total_output += size
        self.cell_chars += size
        if "traceback" in item:
            self.items.append(item)
        elif self.cell_chars > self.limits.max_output_per_cell:
            self._truncate(
                "Output truncated since it exceeded the cell output limit of "
                f"{self.limits.max_output_per_cell} characters"
            )
        elif self.limits.total_output > self.limits.max_output:
            self._truncate(
                "Output truncated since it exceeded the global output limit of "
                f"{self.limits.max_output} characters"
            )
        else:
            self.items.append(item)

    def _truncate(self, text: str) -> None:
        notice = _notice(text)
        if not self.items or self.items[-1] != notice:
            self.items.append(notice)
