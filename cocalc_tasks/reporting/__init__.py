"""Framework-agnostic presentation: log lines, compact summaries for XCom and Prefect results,
and markdown reports, of execution results (:mod:`~cocalc_tasks.reporting.results`) and of
commands and jobs (:mod:`~cocalc_tasks.reporting.commands`). Airflow and Prefect show exactly
these views.
"""

from __future__ import annotations

from cocalc_tasks.reporting.commands import (
    OutputLines,
    command_dict,
    command_log_records,
    command_markdown,
    stats_summary,
)
from cocalc_tasks.reporting.results import (
    DEFAULT_MAX_CHARS,
    compact_dict,
    log_records,
    to_markdown,
)

__all__ = [
    "DEFAULT_MAX_CHARS",
    "OutputLines",
    "command_dict",
    "command_log_records",
    "command_markdown",
    "compact_dict",
    "log_records",
    "stats_summary",
    "to_markdown",
]
