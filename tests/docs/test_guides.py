"""The guides' code examples, run against a local server with real kernels (Sage included), so
the documentation cannot drift from the code. The Airflow and Prefect guides run in their own
environments (tests/airflow/test_guide.py, tests/prefect/test_guide.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import SECRET_KEY
from tests.support.guide_examples import (
    AIRFLOW_PAGES,
    CORE_PAGES,
    PREFECT_PAGES,
    PYTEST_PAGES,
    Block,
    blocks,
    pages_with_runnable_blocks,
    run_as_pytest_file,
    run_console,
    run_page,
)
from tests.support.sage_server import sage_server


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    with sage_server() as url:
        yield url


@pytest.mark.parametrize("page", CORE_PAGES)
def test_the_guide_runs_as_written(page: str, server_url: str, tmp_path: Path) -> None:
    env = {
        "COCALC_HOST": server_url,
        "COCALC_API_KEY": SECRET_KEY,
        "COCALC_PROJECT_ID": str(uuid.uuid4()),
    }
    runnable = [b for b in blocks(page) if b.runs]
    assert runnable, f"docs/{page} has no examples to run"
    assert run_page(page, env, tmp_path) == len(runnable)


@pytest.mark.parametrize("page", PYTEST_PAGES)
def test_the_testing_guide_passes_under_pytest(page: str, tmp_path: Path) -> None:
    done = run_as_pytest_file(page, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout, done.stdout


def test_every_page_with_examples_is_run_somewhere() -> None:
    declared = [*CORE_PAGES, *AIRFLOW_PAGES, *PREFECT_PAGES, *PYTEST_PAGES]
    assert len(declared) == len(set(declared))
    assert sorted(pages_with_runnable_blocks()) == sorted(declared)


def test_only_examples_that_need_the_readers_code_are_shown_unrun() -> None:
    shown = [
        (b.where, b.not_run)
        for page in pages_with_runnable_blocks()
        for b in blocks(page)
        if b.not_run
    ]
    assert [reason for _, reason in shown] == [
        "imports your own DAG module",
        "imports your own flow module",
    ], shown


def test_a_console_example_that_no_longer_matches_fails(tmp_path: Path) -> None:
    """The checker can fail: wrong output, and a wrong exit code shown with `echo $?`."""
    good = Block("x.md", 1, "console", "$ printf 'a\\nb\\nc\\n'\na\n...\nc\n")
    run_console(good, {}, tmp_path)
    for code in ("$ printf 'a\\n'\nb\n", '$ false; echo "exit $?"\nexit 0\n'):
        with pytest.raises(AssertionError, match="expected"):
            run_console(Block("x.md", 1, "console", code), {}, tmp_path)
