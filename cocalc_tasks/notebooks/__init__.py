"""Notebooks as pipeline steps, the papermill way, on CoCalc: :func:`run_notebook`.

- :mod:`~cocalc_tasks.notebooks.run`: ``run_notebook``, ``submit_notebook`` and
  ``NotebookResult``;
- :mod:`~cocalc_tasks.notebooks.transfer`: files in and out of a project through the exec API;
- :mod:`~cocalc_tasks.notebooks.runner`: the script that executes the notebook inside the project
  (standard library, nbformat and nbclient only; sent as it is).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cocalc_tasks._lazy import lazy_exports

#: Loaded on first use, so importing one light module of this package stays light.
_EXPORTS = {
    "PROJECT_PREFIX": "cocalc_tasks.notebooks.run",
    "NotebookCell": "cocalc_tasks.notebooks.run",
    "NotebookResult": "cocalc_tasks.notebooks.run",
    "NotebookRun": "cocalc_tasks.notebooks.run",
    "run_notebook": "cocalc_tasks.notebooks.run",
    "submit_notebook": "cocalc_tasks.notebooks.run",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)

if TYPE_CHECKING:
    from cocalc_tasks.notebooks.run import PROJECT_PREFIX as PROJECT_PREFIX
    from cocalc_tasks.notebooks.run import NotebookCell as NotebookCell
    from cocalc_tasks.notebooks.run import NotebookResult as NotebookResult
    from cocalc_tasks.notebooks.run import NotebookRun as NotebookRun
    from cocalc_tasks.notebooks.run import run_notebook as run_notebook
    from cocalc_tasks.notebooks.run import submit_notebook as submit_notebook
