"""Runs a notebook inside a CoCalc project: the script of ``run_notebook``'s async job.

This file is sent as it is to the project and run by its ``python3``; it needs only the
standard library, ``nbformat`` and ``nbclient`` there (both come with Jupyter; the local
server's ``server`` extra installs them). ``run_notebook`` also imports it locally, for the
parameter rendering, so there is one implementation of each.

``python3 notebook_runner.py SPEC_JSON`` where the spec names the input, the output, the
kernel (optional), the parameters and the expected SHA-256 of the input. It:

1. checks the input's digest (the upload arrived whole);
2. picks the kernel: the one asked for, else the notebook's kernelspec, among the project's
   kernelspecs and those in ``COCALC_TASKS_KERNEL_DIRS`` (the local server's own, such as its
   bundled bash); a name the project does not have is looked up in
   ``COCALC_TASKS_KERNEL_ALIASES`` (the local server's aliases);
3. injects the parameters papermill's way: an ``injected-parameters`` cell right after the cell
   tagged ``parameters``, or first when there is none, written in the kernel's language;
4. runs every cell with nbclient, without a per-cell limit (the job's timeout bounds the run),
   printing ``cell k of n done`` after each code cell (code cells only, counted from 1), and
   shuts the kernel down before it exits;
5. writes the executed notebook, cut after the failing cell if one fails, and prints a last
   line ``COCALC-NOTEBOOK {json}`` with the outcome and the output's size and digest.

``run_notebook`` turns the progress lines into ``on_progress`` calls and hides the status line.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import shlex
import shutil
import sys
import tempfile
import time
from typing import Any

STATUS_PREFIX = "COCALC-NOTEBOOK "
#: After each code cell, a line a person can read in any log: ``cell 2 of 5 done``.
PROGRESS_LINE = "cell {done} of {of} done"
ALIASES_ENV = "COCALC_TASKS_KERNEL_ALIASES"
KERNEL_DIRS_ENV = "COCALC_TASKS_KERNEL_DIRS"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ParameterError(ValueError):
    """A parameter name or value the kernel's language cannot take."""


# -- parameters -------------------------------------------------------------------------------


def _python(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return f"float({str(value)!r})"
    if isinstance(value, bool | int | float | str) or value is None:
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_python(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_python(str(k))}: {_python(v)}" for k, v in value.items()) + "}"
    raise ParameterError(f"cannot write a {type(value).__name__} as a parameter")


def _r_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _r(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return f"{value}L" if abs(value) < 2**31 else repr(float(value))
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Inf" if value > 0 else "-Inf"
        return repr(value)
    if isinstance(value, str):
        return _r_string(value)
    if isinstance(value, list | tuple):
        return "list(" + ", ".join(_r(v) for v in value) + ")"
    if isinstance(value, dict):
        return "list(" + ", ".join(f"{_r_string(str(k))} = {_r(v)}" for k, v in value.items()) + ")"
    raise ParameterError(f"cannot write a {type(value).__name__} as a parameter")


def _bash(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "''"
    if isinstance(value, list | tuple):
        return "(" + " ".join(shlex.quote(str(v)) for v in value) + ")"
    if isinstance(value, dict):
        raise ParameterError("bash has no mapping values; pass a JSON string instead")
    return shlex.quote(str(value))


#: How each language writes ``name = value``; Sage reads Python's literals.
_WRITERS = {
    "python": ("{name} = {value}", _python),
    "sage": ("{name} = {value}", _python),
    "r": ("{name} <- {value}", _r),
    "bash": ("{name}={value}", _bash),
}


def render_parameters(parameters: dict[str, Any], language: str) -> str:
    """The injected cell's source: one assignment per parameter, in ``language``."""
    writer = _WRITERS.get(language.lower())
    if writer is None:
        raise ParameterError(
            f"no parameter syntax for the language {language!r} "
            f"(known: {', '.join(sorted(_WRITERS))})"
        )
    line, write = writer
    lines = ["# Parameters injected by cocalc-tasks"]
    for name, value in parameters.items():
        if not _NAME.match(name):
            raise ParameterError(f"parameter name {name!r} is not an identifier")
        lines.append(line.format(name=name, value=write(value)))
    return "\n".join(lines) + "\n"


def inject_parameters(nb: Any, parameters: dict[str, Any], language: str) -> Any:
    """Insert (or replace) the ``injected-parameters`` cell, papermill's way."""
    import nbformat

    source = render_parameters(parameters, language)
    cells = [c for c in nb.cells if "injected-parameters" not in _tags(c)]
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    tagged = [i for i, c in enumerate(cells) if "parameters" in _tags(c)]
    cells.insert(tagged[0] + 1 if tagged else 0, cell)
    nb.cells = cells
    return nb


def _tags(cell: Any) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


# -- the run ----------------------------------------------------------------------------------


def _digest(path: str) -> str:
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def _kernel(nb: Any, asked: str | None) -> tuple[str, str, Any]:
    """The kernelspec to run, its language, and the spec manager that knows it."""
    from jupyter_client.kernelspec import KernelSpecManager

    manager = KernelSpecManager()
    for directory in json.loads(os.environ.get(KERNEL_DIRS_ENV) or "[]"):
        if directory not in manager.kernel_dirs:
            manager.kernel_dirs.append(directory)
    specs = manager.find_kernel_specs()
    wanted = asked or nb.metadata.get("kernelspec", {}).get("name") or "python3"
    name = wanted
    if name not in specs:
        aliases = json.loads(os.environ.get(ALIASES_ENV) or "{}")
        name = aliases.get(wanted) or aliases.get(wanted.strip().lower()) or wanted
    if name not in specs:
        raise LookupError(
            f"no kernel {wanted!r} in this project; it has: {', '.join(sorted(specs))}"
        )
    language = manager.get_kernel_spec(name).language or "python"
    if name.startswith("sage") or "sage" in language.lower():
        language = "sage"
    return name, language, manager


class MissingNotebook(FileNotFoundError):
    """The notebook named in the project is not there."""


def run(spec: dict[str, Any]) -> dict[str, Any]:
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    source, output = spec["input"], spec["output"]
    if not os.path.isfile(source):
        raise MissingNotebook(source)
    if spec.get("sha256") and _digest(source) != spec["sha256"]:
        raise ValueError("the uploaded notebook does not match its digest: upload again")
    nb = nbformat.read(source, as_version=4)
    kernel, language, specs = _kernel(nb, spec.get("kernel"))
    if spec.get("parameters") is not None:
        inject_parameters(nb, spec["parameters"], language)
    nb.metadata.setdefault("kernelspec", {})["name"] = kernel
    failed: dict[str, Any] = {}
    code_cells = sum(1 for cell in nb.cells if cell.cell_type == "code")
    done = [0]
    written = [time.monotonic()]

    def on_error(cell: Any, cell_index: int, execute_reply: Any) -> None:
        failed.setdefault("cell", cell_index)

    def on_done(cell: Any, cell_index: int, execute_reply: Any) -> None:
        if cell.cell_type == "code":
            done[0] += 1
            # The notebook as far as it ran, for whoever watches the job (the local server's
            # job page renders it), at most once a second (a write validates the whole
            # notebook: tens of ms); the final write below replaces it.
            if time.monotonic() - written[0] >= 1.0:
                with contextlib.suppress(OSError):
                    nbformat.write(nb, output)
                written[0] = time.monotonic()
            print(PROGRESS_LINE.format(done=done[0], of=code_cells), flush=True)

    timeout = spec.get("cell_timeout")
    # The kernel talks over Unix sockets in a private folder (short enough for their 107-byte
    # limit): no TCP ports open in the project, and no warning about plain-text TCP.
    from jupyter_client.manager import KernelManager

    sockets = tempfile.mkdtemp(prefix="nb-kernel-")
    manager = KernelManager(
        kernel_name=kernel,
        kernel_spec_manager=specs,
        transport="ipc",
        ip=os.path.join(sockets, "k"),
    )
    client = NotebookClient(
        nb,
        km=manager,
        kernel_name=kernel,
        timeout=timeout if timeout else None,
        allow_errors=False,
        record_timing=True,
        resources={"metadata": {"path": os.getcwd()}},
        on_cell_error=on_error,
        on_cell_executed=on_done,
    )
    outcome: dict[str, Any] = {"ok": True, "kernel": kernel, "language": language}
    started = time.monotonic()
    # The kernel's own stderr goes to a file, not to the job's: a kernel being shut down can
    # log a harmless error there (ipykernel flushing onto a closed socket). If the kernel dies,
    # the end of that file is the job's explanation.
    kernel_log = os.path.join(sockets, "kernel.log")
    try:
        with open(kernel_log, "wb") as stderr:
            client.execute(stderr=stderr)
    except CellExecutionError as exc:
        index = failed.get("cell")
        outcome.update(ok=False, cell=index, ename=exc.ename, evalue=exc.evalue)
        if index is not None:
            nb.cells = nb.cells[: index + 1]  # the notebook ends at the failing cell
    except Exception:
        _echo_tail(kernel_log)
        raise
    finally:
        # nbclient leaves a kernel it did not start to its owner: stop it here, or it outlives
        # this script and says "Parent appears to have exited" on the job's stderr.
        if manager.has_kernel:
            manager.shutdown_kernel(now=False)
        shutil.rmtree(sockets, ignore_errors=True)
    outcome["seconds"] = time.monotonic() - started
    nbformat.write(nb, output)
    outcome.update(size=os.path.getsize(output), sha256=_digest(output))
    return outcome


def _echo_tail(path: str, limit: int = 4000) -> None:
    """The end of what the kernel wrote to its stderr, onto the job's stderr."""
    try:
        with open(path, "rb") as log:
            log.seek(0, os.SEEK_END)
            log.seek(max(0, log.tell() - limit))
            tail = log.read().decode("utf-8", "replace")
    except OSError:
        return
    if tail.strip():
        sys.stderr.write(f"the kernel's stderr ended with:\n{tail}")
        sys.stderr.flush()


def main(argv: list[str]) -> int:
    spec = json.loads(argv[1])
    try:
        outcome = run(spec)
    except Exception as exc:  # reported to the caller as a status line, not a bare traceback
        outcome = {"ok": False, "cell": None, "ename": type(exc).__name__, "evalue": str(exc)}
        outcome["setup"] = True
        if isinstance(exc, MissingNotebook):
            outcome.update(ename="FileNotFoundError", missing=str(exc))
    print(STATUS_PREFIX + json.dumps(outcome), flush=True)
    return 0 if outcome.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
