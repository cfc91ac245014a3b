"""Framework-agnostic presentation of commands and jobs: streamed log lines, the compact
summary that XCom and Prefect results carry, and a markdown report with the job's samples.

The Airflow job operator and trigger and the Prefect job tasks all call these, so a job looks
the same in a task log, an XCom value, a flow-run log and an artifact.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from cocalc_tasks.model.command_results import CommandResult, JobStat, JobStatus, new_output
from cocalc_tasks.model.output_items import strip_ansi
from cocalc_tasks.reporting.results import DEFAULT_MAX_CHARS, cut

__all__ = [
    "OutputLines",
    "command_dict",
    "command_log_records",
    "command_markdown",
    "stats_summary",
]

#: Longest line passed on as one log record; a longer one is cut with a marker.
MAX_LINE = 4_000
#: Most CPU and memory samples shown in a markdown report (evenly spread over the job).
MAX_SAMPLES_SHOWN = 12


class OutputLines:
    """Turns a job's growing output into complete, ANSI-free lines for a logger.

    ``emit(stream, line)`` is called once per line; a partial line waits for its end (or for
    :meth:`flush`). Feed it either the new text (``feed``, e.g. from ``CocalcClient.wait``'s
    ``on_output``) or whole job records (``update``, which works out what is new).

    ``hide(line)``, when given, drops the lines it is true for (e.g. a runner's protocol
    lines). :meth:`logged` and :meth:`skip` let a waiter that is restarted (Airflow's
    triggerer) carry on where the last one stopped instead of repeating the output.
    """

    def __init__(
        self, emit: Callable[[str, str], None], hide: Callable[[str], bool] | None = None
    ) -> None:
        self._emit = emit
        self._hide = hide
        self._partial: dict[str, str] = {}
        self._seen: dict[str, int] = {}
        #: Lines passed on so far, per stream.
        self.lines: dict[str, int] = {"stdout": 0, "stderr": 0}

    @classmethod
    def to_logger(cls, logger: Any, hide: Callable[[str], bool] | None = None) -> OutputLines:
        """Lines logged as ``[stdout] ...`` (info) and ``[stderr] ...`` (warning)."""

        def emit(stream: str, line: str) -> None:
            level = logger.warning if stream == "stderr" else logger.info
            level("[%s] %s", stream, line)

        return cls(emit, hide)

    def logged(self) -> dict[str, int]:
        """Characters of each stream of the job's records passed on as whole lines so far
        (with :meth:`update`): the offsets to :meth:`skip` to on a restart."""
        return {
            stream: seen - len(self._partial.get(stream, "")) for stream, seen in self._seen.items()
        }

    def skip(self, offsets: dict[str, int]) -> None:
        """Start :meth:`update` at ``offsets`` (from :meth:`logged`): what precedes was logged."""
        self._seen = {stream: int(offset) for stream, offset in offsets.items()}

    def feed(self, stream: str, text: str) -> None:
        buffered = self._partial.get(stream, "") + text
        *complete, rest = buffered.split("\n")
        self._partial[stream] = rest
        for line in complete:
            self._line(stream, line)

    def update(self, status: JobStatus) -> None:
        for stream, text in new_output(status, self._seen):
            self.feed(stream, text)

    def flush(self) -> None:
        for stream, rest in list(self._partial.items()):
            if rest:
                self._line(stream, rest)
            self._partial[stream] = ""

    def _line(self, stream: str, line: str) -> None:
        if self._hide is not None and self._hide(line):
            return
        line = strip_ansi(line.rstrip("\r"))
        if "\r" in line:  # a progress bar: keep what the terminal would show last
            line = line.rsplit("\r", 1)[-1]
        if len(line) > MAX_LINE:
            line = line[:MAX_LINE] + f" ... [{len(line) - MAX_LINE} more characters cut]"
        self.lines[stream] = self.lines.get(stream, 0) + 1
        self._emit(stream, line)


def stats_summary(stats: Sequence[JobStat]) -> dict[str, Any]:
    """The samples in a few numbers: count, peak CPU %, CPU seconds, peak memory (MiB)."""
    if not stats:
        return {"samples": 0}
    return {
        "samples": len(stats),
        "cpu_pct_max": round(max(s.cpu_pct for s in stats), 1),
        "cpu_secs": round(max(s.cpu_secs for s in stats), 2),
        "mem_rss_max_mib": round(max(s.mem_rss for s in stats), 2),
    }


def command_dict(result: CommandResult, max_chars: int = DEFAULT_MAX_CHARS) -> dict[str, Any]:
    """A small JSON-safe summary for XCom or a flow: exit code, status, the output (each
    stream cut to ``max_chars``, keeping its end, where errors are), job id, elapsed time and
    a summary of the samples."""
    return {
        "exit_code": result.exit_code,
        "status": result.status,
        "ok": result.ok,
        "stdout": _tail(result.stdout, max_chars),
        "stderr": _tail(result.stderr, max_chars),
        "job_id": result.job_id,
        "elapsed": None if result.elapsed is None else round(result.elapsed, 3),
        "command": result.command,
        "stats": stats_summary(result.stats),
    }


def command_log_records(result: CommandResult) -> Iterator[tuple[str, str]]:
    """``(level, message)`` pairs summing up a finished command for a task log."""
    what = result.command or "command"
    elapsed = "?" if result.elapsed is None else f"{result.elapsed:.1f}"
    job = f"job {result.job_id} " if result.job_id else ""
    level = "info" if result.ok else "error"
    yield level, f"{job}{result.status}: {what} exited with code {result.exit_code} in {elapsed} s"
    summary = stats_summary(result.stats)
    if summary["samples"]:
        yield (
            "info",
            f"{summary['samples']} samples: CPU {summary['cpu_secs']} s "
            f"(peak {summary['cpu_pct_max']}%), peak memory {summary['mem_rss_max_mib']} MiB",
        )
    if result.truncated:
        yield "warning", "the output was cut at max_output"
    if not result.ok and result.stderr.strip():
        yield "error", "[stderr] " + _tail(strip_ansi(result.stderr).rstrip(), 2_000)


def command_markdown(
    result: CommandResult, *, title: str | None = None, page: str | None = None
) -> str:
    """A markdown report: command, status, exit code, elapsed time, the samples as a table,
    and the ends of stdout and stderr; ``page`` links the job's (or project's) page."""
    elapsed = "?" if result.elapsed is None else f"{result.elapsed:.2f} s"
    lines = [
        f"# {title or 'CoCalc job'}",
        "",
        "| | |",
        "|---|---|",
        f"| command | `{_cell(result.command or '')}` |",
        f"| job id | `{result.job_id or '-'}` |",
        f"| status | {result.status} |",
        f"| exit code | {result.exit_code} |",
        f"| elapsed | {elapsed} |",
    ]
    if page:
        lines.append(f"| page | [{page}]({page}) |")
    if result.stats:
        lines += [
            "",
            "## CPU and memory",
            "",
            "| time (s) | CPU % | CPU s | memory (MiB) |",
            "|---:|---:|---:|---:|",
        ]
        start = result.stats[0].timestamp
        for stat in _spread(result.stats, MAX_SAMPLES_SHOWN):
            lines.append(
                f"| {(stat.timestamp - start) / 1000:.1f} | {stat.cpu_pct:.1f} | "
                f"{stat.cpu_secs:.2f} | {stat.mem_rss:.1f} |"
            )
    for name in ("stdout", "stderr"):
        text: str = strip_ansi(getattr(result, name)).rstrip()
        if text:
            fence = "````" if "```" in text else "```"
            lines += ["", f"## {name}", "", fence, _tail(text, 4_000), fence]
    return "\n".join(lines) + "\n"


def _tail(text: str, max_chars: int) -> str:
    """The end of ``text`` (a job's last lines matter most), with a marker of what was cut."""
    if len(text) <= max_chars:
        return text
    return f"[{len(text) - max_chars} earlier characters cut] ...\n" + text[-max_chars:]


def _spread(stats: Sequence[JobStat], count: int) -> list[JobStat]:
    if len(stats) <= count:
        return list(stats)
    step = (len(stats) - 1) / (count - 1)
    return [stats[round(i * step)] for i in range(count)]


def _cell(text: str) -> str:
    return cut(text.replace("|", "\\|").replace("`", "'").replace("\n", " "), 200)
