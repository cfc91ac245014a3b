"""The documentation site builds strictly, opens on index.html, and its API reference has every
public name (rendered from the docstrings, with their roles turned into links)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: A public name per reference page, with the anchor mkdocstrings gives it.
EXPECTED = {
    "reference/client.html": [
        "cocalc_tasks.api.execute_code",
        "cocalc_tasks.api.run_command",
        "cocalc_tasks.client.client.CocalcClient",
        "cocalc_tasks.client.kernel_session.KernelSession",
    ],
    "reference/model.html": [
        "cocalc_tasks.model.results.ExecutionResult",
        "cocalc_tasks.model.output_items.Stream",
        "cocalc_tasks.model.command_results.CommandResult",
        "cocalc_tasks.model.requests.ExecuteRequest",
    ],
    "reference/errors.html": [
        "cocalc_tasks.model.errors.CocalcError",
        "cocalc_tasks.model.results.CocalcExecutionError",
    ],
    "reference/notebooks.html": ["cocalc_tasks.notebooks.run.run_notebook"],
    "reference/testing.html": ["cocalc_tasks.testing.local_server"],
    "reference/airflow.html": [
        "airflow_provider.hooks.cocalc.CocalcHook",
        "airflow_provider.operators.job.CocalcRunOperator",
    ],
    "reference/prefect.html": ["prefect_tasks.credentials.CocalcCredentials"],
}


def test_the_site_builds_strictly_with_its_api_reference(tmp_path: Path) -> None:
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert done.returncode == 0, done.stderr
    index = (site / "index.html").read_text()
    assert "reference/index.html" in index and "getting-started.html" in index
    for page, names in EXPECTED.items():
        html = (site / page).read_text()
        missing = [name for name in names if f'id="{name}"' not in html]
        assert missing == [], page
        assert not re.search(r":(class|func|meth|mod):`", html), f"{page}: a raw Sphinx role"
    assert 'href="../reference/errors.html"' in (site / "guides/python.html").read_text()


def test_the_readme_is_short_and_its_examples_are_sound() -> None:
    """The README stays a front page (the guides hold the rest), and its examples compile and
    import only names that exist (the guides' examples, which it mirrors, are run)."""
    import ast
    import importlib

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.encode()) <= 15_000
    blocks = re.findall(r"^```python\n(.*?)^```", readme, re.S | re.M)
    assert len(blocks) == 3  # Python, Airflow, Prefect
    for code in blocks:
        tree = ast.parse(code)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cocalc_tasks"):
                module = importlib.import_module(node.module or "")
                assert all(hasattr(module, alias.name) for alias in node.names), node.module
    links = re.findall(r"\]\((docs/[^)#]+)", readme)
    assert links and all((ROOT / link).exists() for link in links), links
