"""Run the code examples of the documentation's guides, so a guide cannot drift from the code.

A page's ``python`` blocks run in order in one namespace, as a reader would paste them into one
session (on :data:`PYTEST_PAGES` they are a pytest file, run by pytest); its ``console`` blocks run each ``$ command`` with bash and compare what it prints
with the lines shown under it (``...`` alone on a line stands for any lines, and inside a line
for any text). ``bash`` blocks (installs, exports, server command lines) are shown, not run, and so is a
block right after ``<!-- not run: REASON -->`` (only where it needs the reader's own code).

Which environment runs which page is declared here once, and a test checks that every page
with a runnable block is in exactly one list.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parents[2] / "docs"
RUNNABLE = ("python", "console")

#: Pages whose examples run in the core environment (tests/docs), against a Sage-capable server.
CORE_PAGES = (
    "index.md",
    "getting-started.md",
    "guides/python.md",
    "guides/cli.md",
    "long-steps.md",
    "notebooks.md",
)
#: Pages whose examples run in the Airflow environment (tests/airflow/test_guide.py).
AIRFLOW_PAGES = ("guides/airflow.md",)
#: Pages whose examples run in the Prefect environment (tests/prefect/test_guide.py).
PREFECT_PAGES = ("guides/prefect.md",)
#: Pages whose examples run in the user's own tests (tests/docs/test_guides.py runs them there).
PYTEST_PAGES = ("guides/testing.md",)


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    lang: str
    code: str
    #: Why it is shown but not run (``<!-- not run: REASON -->`` before it); None: it runs.
    not_run: str | None = None

    @property
    def runs(self) -> bool:
        return self.lang in RUNNABLE and self.not_run is None

    @property
    def where(self) -> str:
        return f"docs/{self.page}:{self.line}"


_FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```\s*$", re.S | re.M)
_NOT_RUN = re.compile(r"<!-- not run: (.+?) -->\s*\Z")


def blocks(page: str) -> list[Block]:
    """The fenced blocks of ``docs/<page>``, in order."""
    text = (DOCS / page).read_text(encoding="utf-8")
    found = []
    for m in _FENCE.finditer(text):
        reason = _NOT_RUN.search(text[: m.start()])
        line = text.count("\n", 0, m.start()) + 1
        found.append(Block(page, line, m.group(1), m.group(2), reason and reason.group(1)))
    return found


def pages_with_runnable_blocks() -> list[str]:
    found = []
    for path in sorted(DOCS.rglob("*.md")):
        page = path.relative_to(DOCS).as_posix()
        if any(b.runs for b in blocks(page)):
            found.append(page)
    return found


def run_python(block: Block, namespace: dict[str, Any]) -> None:
    exec(compile(block.code, block.where, "exec"), namespace)  # noqa: S102


def _expected_pattern(lines: list[str]) -> re.Pattern[str]:
    parts = []
    for line in lines:
        if line.strip() == "...":
            parts.append(r"(?:[^\n]*\n)*?")
        else:
            parts.append(".*?".join(re.escape(p) for p in line.split("...")) + r"[ \t]*\n")
    return re.compile("".join(parts), re.S)


def run_console(block: Block, env: Mapping[str, str], cwd: Path, timeout: float = 300) -> None:
    """Run each ``$`` command of a console block; its output must match the lines shown."""
    commands: list[tuple[str, list[str]]] = []
    for line in block.code.splitlines():
        if line.startswith("$ "):
            commands.append((line[2:], []))
        elif commands:
            commands[-1][1].append(line)
    assert commands, f"{block.where}: a console block without a $ command"
    # As in an activated environment: its programs (cocalc-tasks) come first on PATH.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    for command, expected in commands:
        done = subprocess.run(
            ["bash", "-c", command],
            capture_output=True,
            text=True,
            env={**os.environ, **env, "PATH": path},
            cwd=cwd,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        shown = done.stdout + done.stderr
        shown = "\n".join(line.rstrip() for line in shown.splitlines()) + "\n" if shown else ""
        pattern = _expected_pattern([line.rstrip() for line in expected])
        assert pattern.fullmatch(shown), (
            f"{block.where}: `{command}` printed\n{shown}\nexpected\n" + "\n".join(expected)
        )


def run_page(page: str, env: Mapping[str, str], cwd: Path) -> int:
    """Run every python and console block of a page in order; return how many ran."""
    namespace: dict[str, Any] = {"__name__": "__main__"}
    saved = dict(os.environ)
    old_cwd = Path.cwd()
    os.environ.update(env)
    os.chdir(cwd)
    ran = 0
    try:
        for block in blocks(page):
            if not block.runs:
                continue
            if block.lang == "python":
                run_python(block, namespace)
            else:
                run_console(block, env, cwd)
            ran += 1
    finally:
        os.chdir(old_cwd)
        os.environ.clear()
        os.environ.update(saved)
    return ran


def run_as_pytest_file(page: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The page's runnable python blocks as one pytest file, run by pytest as a user would
    (the plugin's fixtures come from the installed entry point)."""
    code = "\n\n".join(b.code for b in blocks(page) if b.runs and b.lang == "python")
    (cwd / "test_guide_example.py").write_text(code)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_guide_example.py"],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
