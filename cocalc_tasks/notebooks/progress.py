"""A notebook job's output as a person should see it: progress, and none of the protocol.

The runner (:mod:`~cocalc_tasks.notebooks.runner`) prints ``cell k of n done`` after each
code cell and a ``COCALC-NOTEBOOK`` status line at the end. :func:`runner_output` turns the
first into ``on_progress(done, of)`` calls (or passes them on as they are, without one), drops
the second, and passes everything else (a kernel's own stderr, say) on unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from cocalc_tasks.notebooks import runner as notebook_runner

__all__ = ["OutputCallback", "ProgressCallback", "runner_output"]

_PROGRESS = re.compile("^" + notebook_runner.PROGRESS_LINE.format(done=r"(\d+)", of=r"(\d+)") + "$")

OutputCallback = Callable[[str, str], None]
#: ``(code cells done, code cells in all)``.
ProgressCallback = Callable[[int, int], None]


def runner_output(
    on_output: OutputCallback | None, on_progress: ProgressCallback | None
) -> OutputCallback:
    """An ``on_output`` for the job that shows progress and hides the protocol lines."""
    pending = {"stdout": ""}

    def feed(stream: str, text: str) -> None:
        if stream != "stdout":
            if on_output is not None:
                on_output(stream, text)
            return
        lines = (pending["stdout"] + text).split("\n")
        pending["stdout"] = lines.pop()  # an unfinished line waits for its end
        for line in lines:
            _line(line)

    def _line(line: str) -> None:
        step = _PROGRESS.match(line)
        if step is not None and on_progress is not None:
            on_progress(int(step[1]), int(step[2]))
        elif not line.startswith(notebook_runner.STATUS_PREFIX) and on_output is not None:
            on_output("stdout", line + "\n")

    return feed
