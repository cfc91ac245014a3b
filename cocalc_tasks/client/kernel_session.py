"""``KernelSession``: state across calls, the way CoCalc intends, by replaying history.

CoCalc's execute API is stateless: every call gets a fresh kernel. A session remembers the
inputs that succeeded and sends them as ``history`` with the next call, where they run again as
one cell before the new input, with their output discarded.

Cost: replay time and the request size grow with every step, the replay shares the call's
per-cell time limit (15 s in the global pool, 30 s in a project), and side effects in history
(file writes, network calls, random draws) happen again on every call. Use :meth:`squash` to
replace a long history with one compact setup cell.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from cocalc_tasks.client.client import CocalcClient
from cocalc_tasks.model.requests import ExecuteRequest
from cocalc_tasks.model.results import ExecutionResult

__all__ = ["KernelSession"]

log = logging.getLogger("cocalc_tasks.client.kernel_session")


class KernelSession:
    """Run a sequence of inputs on one kernel name as if the kernel were kept alive.

    >>> session = KernelSession("python3", client=client)  # doctest: +SKIP
    >>> session.run("a = 2")                                # doctest: +SKIP
    >>> session.run("print(a + 3)").stdout                  # doctest: +SKIP
    '5\\n'
    """

    #: Warn when the replayed history grows past this many characters.
    warn_history_chars = 100_000

    def __init__(
        self,
        kernel: str,
        *,
        client: CocalcClient | None = None,
        project_id: str | None = None,
        path: str | None = None,
        history: Sequence[str] = (),
    ) -> None:
        self.kernel = kernel
        self.client = client if client is not None else CocalcClient()
        self.project_id = project_id
        self.path = path
        self.history: list[str] = list(history)
        #: Every run of this session, in order: its input and result (see :meth:`to_notebook`).
        self.runs: list[tuple[str, ExecutionResult]] = []

    @property
    def history_chars(self) -> int:
        return sum(len(h) for h in self.history)

    def run(self, code: str, *, no_cache: bool = False) -> ExecutionResult:
        """Run ``code`` after the history; keep it in the history only if it raised nothing."""
        request = ExecuteRequest(
            code, self.kernel, tuple(self.history), self.project_id, self.path, no_cache
        )
        result = self.client.send(request)
        self.runs.append((code, result))
        if result.ok:
            self.history.append(code)
            if self.history_chars > self.warn_history_chars:
                log.warning(
                    "session history is %d characters in %d cells; every call replays it "
                    "(consider squash())",
                    self.history_chars,
                    len(self.history),
                )
        return result

    def squash(self, setup: str) -> None:
        """Replace the whole history with one setup cell that recreates the needed state."""
        self.history = [setup]

    def reset(self) -> None:
        self.history = []

    def to_notebook(self) -> Any:
        """The session as an nbformat v4 notebook: one code cell per run, in order, with its
        outputs (failed runs included, so the record shows what went wrong). Run it again with
        :func:`~cocalc_tasks.notebooks.run.run_notebook`, or save it with ``nbformat.write``."""
        from cocalc_tasks.model.notebook_cells import new_notebook

        cells = [
            result.to_notebook_cell(code, execution_count=number)
            for number, (code, result) in enumerate(self.runs, start=1)
        ]
        return new_notebook(cells, self.kernel)
