"""``run_script``'s transport: any code, carried safely through ``/api/v2/exec`` as a bash script.

The code travels base64-encoded inside a quoted heredoc. Base64 has no quotes, no ``$`` and
no ``_``, and the end marker contains ``_``, so no content can end the heredoc early or be
expanded by the shell: quotes, heredoc markers, backslashes, unicode and a few MB all arrive
byte for byte. The script decodes it into a private temporary directory (removed on exit),
and runs it with the interpreter:

- ``python``/``python3`` (any ``pythonX.Y``) and ``sage`` run it the way a notebook cell
  runs: if the last statement is an expression, its value is printed (``repr``), so
  ``factor(2^255-1)`` prints Sage's factorisation. ``sage`` preparses the code (``2^10``,
  ``1/3``) and runs ``sage -python`` when ``sage`` is on the project's ``PATH``, else
  ``python3`` with ``sage.all`` imported (e.g. passagemath).
- any other program (``bash``, ``Rscript``, ``julia``, ``node``, ``python3 -u``...) gets the
  script file as its first argument, followed by ``args``.

The project needs ``bash``, ``base64`` and ``mktemp`` (coreutils), which every CoCalc project
has.
"""

from __future__ import annotations

import base64
import re
import secrets
import shlex
from collections.abc import Sequence

from cocalc_tasks.model.errors import CocalcValidationError

__all__ = ["script_command"]

_PYTHON = re.compile(r"^python(\d+(\.\d+)?)?$")

#: Runs a file like a notebook cell: the value of a final expression is printed.
_CELL_RUNNER = """\
import ast, sys
def _main():
    sage = sys.argv[1] == "--sage"
    path = sys.argv[2]
    sys.argv = [path, *sys.argv[3:]]
    with open(path, encoding="utf-8") as f:
        source = f.read()
    ns = {"__name__": "__main__", "__file__": path, "__builtins__": __builtins__}
    if sage:
        exec("from sage.all import *", ns)
        from sage.repl.preparse import preparse_file
        source = preparse_file(source)
    tree = ast.parse(source, path)
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    exec(compile(tree, path, "exec"), ns)
    if last is not None:
        value = eval(compile(last, path, "eval"), ns)
        if value is not None:
            print(repr(value))
_main()
"""


def _heredoc(target: str, data: bytes) -> str:
    marker = f"COCALC_TASKS_{secrets.token_hex(8)}_END"
    payload = base64.encodebytes(data).decode("ascii")
    return f"base64 -d > {target} <<'{marker}'\n{payload}{marker}\n"


def _encode(code: str) -> bytes:
    if not isinstance(code, str):
        raise CocalcValidationError(f"code must be a string, got {type(code).__name__}")
    if "\x00" in code:
        raise CocalcValidationError("code contains a NUL character, which no interpreter reads")
    try:
        return code.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise CocalcValidationError(f"code is not valid unicode text: {exc.reason}") from None


def script_command(code: str, interpreter: str = "python3", args: Sequence[str] = ()) -> str:
    """The bash script that runs ``code`` with ``interpreter`` (send it with ``bash=True``)."""
    if not isinstance(interpreter, str) or not interpreter.strip():
        raise CocalcValidationError(f"interpreter must be a program name, got {interpreter!r:.60}")
    try:
        words = shlex.split(interpreter)
    except ValueError as exc:
        raise CocalcValidationError(f"interpreter {interpreter!r}: {exc}") from None
    data = _encode(code)
    arguments = " ".join(shlex.quote(a) for a in args)
    lines = [
        "set -e",
        'ct_dir=$(mktemp -d "${TMPDIR:-/tmp}/cocalc-tasks-XXXXXXXX")',
        "trap 'rm -rf \"$ct_dir\"' EXIT",
        _heredoc('"$ct_dir/script"', data),
    ]
    program = words[0].rsplit("/", 1)[-1]
    if len(words) == 1 and (program == "sage" or _PYTHON.match(program)):
        lines.append(_heredoc('"$ct_dir/run.py"', _CELL_RUNNER.encode()))
        lines.append("set +e")
        if program == "sage":
            run = '"$ct_dir/run.py" --sage "$ct_dir/script"'
            lines.append(
                f"if command -v {shlex.quote(words[0])} >/dev/null 2>&1; then "
                f"{shlex.quote(words[0])} -python {run} {arguments}; "
                f"else python3 {run} {arguments}; fi"
            )
        else:
            lines.append(
                f'{shlex.quote(words[0])} "$ct_dir/run.py" --python "$ct_dir/script" {arguments}'
            )
    else:
        lines.append("set +e")
        lines.append(f'{shlex.join(words)} "$ct_dir/script" {arguments}')
    # Keep the interpreter's exit code (the EXIT trap would otherwise report its own).
    lines.append("ct_code=$?; exit $ct_code")
    return "\n".join(lines) + "\n"
