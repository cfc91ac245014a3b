"""``run_script``'s transport: the generated bash script, run by a real local bash."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cocalc_tasks import CocalcValidationError
from cocalc_tasks.model.scripts import script_command

TRICKY = (
    "s = '''it's \"quoted\" $HOME `id` \\\\ \\n EOF\n"
    "COCALC_TASKS_0123456789abcdef_END\n"
    "<<'EOF'\n'''\n"
    "print(s)\n"
    "print('unicode: é 😀 \\u202e ∑')\n"
)


def run(script: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run it as CoCalc does: ``bash a.sh``; the script's own temp files go to ``tmp_path``."""
    work = tmp_path.parent / f"{tmp_path.name}-script"
    work.mkdir(exist_ok=True)
    (work / "a.sh").write_text(script, encoding="utf-8")
    path = f"{Path(sys.executable).parent}:/usr/bin:/bin"
    env = {**os.environ, "TMPDIR": str(tmp_path), "PATH": path}
    return subprocess.run(
        ["bash", str(work / "a.sh")],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def test_any_text_arrives_byte_for_byte(tmp_path: Path) -> None:
    direct = subprocess.run([sys.executable, "-c", TRICKY], capture_output=True, text=True)
    done = run(script_command(TRICKY, "python3"), tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == direct.stdout and "COCALC_TASKS_0123456789abcdef_END" in done.stdout
    assert list(tmp_path.iterdir()) == []  # the private directory is removed


def test_a_few_megabytes(tmp_path: Path) -> None:
    blob = "x" * 3_000_000
    code = f"data = {blob!r}\nprint(len(data))"
    script = script_command(code, "python3")
    assert len(script) > 4_000_000
    done = run(script, tmp_path)
    assert done.returncode == 0 and done.stdout == "3000000\n"


def test_last_expression_is_printed_like_a_cell(tmp_path: Path) -> None:
    done = run(script_command("x = 6\nx * 7", "python3"), tmp_path)
    assert done.stdout == "42\n"
    done = run(script_command("None", "python3"), tmp_path)
    assert done.stdout == ""


def test_exit_codes_and_tracebacks_come_through(tmp_path: Path) -> None:
    done = run(script_command("import sys\nprint('before')\nsys.exit(7)", "python3"), tmp_path)
    assert done.returncode == 7 and done.stdout == "before\n"
    done = run(script_command("1/0", "python3"), tmp_path)
    assert done.returncode == 1 and "ZeroDivisionError" in done.stderr


def test_other_interpreters_get_the_file_and_args(tmp_path: Path) -> None:
    code = 'echo "args: $1|$2"; printf "%s" "$(cat "$0" | wc -l)"; exit 3'
    done = run(script_command(code, "bash", ["a b", "c'd"]), tmp_path)
    assert done.returncode == 3
    assert done.stdout.startswith("args: a b|c'd\n")
    done = run(script_command("print(__import__('sys').argv[1:])", "python3 -u", ["x"]), tmp_path)
    assert done.stdout == "['x']\n"  # an interpreter with options runs the file as is


@pytest.mark.parametrize(
    ("code", "interpreter", "fragment"),
    [
        ("a\x00b", "python3", "NUL"),
        ("\ud800", "python3", "not valid unicode"),
        (b"print(1)", "python3", "code must be a string"),
        ("1", "", "interpreter must be"),
        ("1", "python3 '", "interpreter"),
    ],
)
def test_bad_scripts_are_refused(code: object, interpreter: str, fragment: str) -> None:
    with pytest.raises(CocalcValidationError) as info:
        script_command(code, interpreter)  # type: ignore[arg-type]
    assert fragment in str(info.value)
