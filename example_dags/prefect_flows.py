"""Example Prefect flows that run code on CoCalc.

Each flow takes ``credentials_block``: the name of a saved ``CocalcCredentials`` block. Without
it, credentials come from ``COCALC_HOST`` / ``COCALC_API_KEY`` (handy against a local server).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from prefect import flow, task, unmapped

from example_dags.mertens import SCRIPT, checked
from prefect_tasks import (
    CocalcCredentials,
    cancel_cocalc_jobs,
    execute_code,
    run_command,
    run_notebook,
)

PRIMES_CODE = """
import json
primes = [n for n in range(2, 60) if all(n % d for d in range(2, int(n ** 0.5) + 1))]
print(json.dumps(primes))
"""


def load_credentials(credentials_block: str | None) -> CocalcCredentials:
    if credentials_block:
        block: CocalcCredentials = CocalcCredentials.load(credentials_block)  # type: ignore[assignment]
        return block
    key = os.environ.get("COCALC_API_KEY")
    return CocalcCredentials(
        api_key=key or None,
        host=os.environ.get("COCALC_HOST", "https://cocalc.com"),
        project_id=os.environ.get("COCALC_PROJECT_ID") or None,
    )


def env_credentials() -> CocalcCredentials:
    """Credentials from COCALC_HOST, COCALC_API_KEY and COCALC_PROJECT_ID."""
    return load_credentials(None)


@task
def summarize(primes: list[int]) -> dict[str, int]:
    return {"count": len(primes), "largest": max(primes)}


@flow(name="cocalc-compute-and-pass")
def compute_and_pass(credentials_block: str | None = None) -> dict[str, Any]:
    """Compute on CoCalc, summarise locally, then check the summary on CoCalc again."""
    credentials = load_credentials(credentials_block)
    primes = json.loads(execute_code(credentials, PRIMES_CODE, kernel="python3").stdout)
    summary = summarize(primes)
    check = execute_code(
        credentials,
        f"print(sum(primes) % {summary['largest']})",
        kernel="python3",
        history=[PRIMES_CODE],
        artifact_key="cocalc-prime-check",
    )
    return {**summary, "checked": int(check.stdout)}


@task
def aggregate(values: list[int]) -> int:
    return sum(values)


@flow(name="cocalc-map-snippets")
def map_snippets(
    credentials_block: str | None = None, sizes: tuple[int, ...] = (10, 100, 1000)
) -> int:
    """Fan several snippets out in parallel with ``.map`` and add up their results."""
    credentials = load_credentials(credentials_block)
    snippets = [f"sum(k * k for k in range({n}))" for n in sizes]
    futures = execute_code.map(unmapped(credentials), snippets, kernel=unmapped("python3"))
    return aggregate([int(f.result().text) for f in futures])


@flow(name="cocalc-sage-factor")
def sage_factor(
    credentials_block: str | None = None,
    kernel: str = "sage-10.4",
    n: int = 2023,
    setup: list[str] | None = None,
) -> str:
    """A SageMath step written for cocalc.com: ``factor(n)``, with an artifact of the output."""
    credentials = load_credentials(credentials_block)
    result = execute_code(
        credentials,
        f"factor({n})",
        kernel=kernel,
        history=setup or None,
        artifact_key="cocalc-sage-factor",
    )
    return result.text


@flow(name="cocalc-sage-jobs", on_cancellation=[cancel_cocalc_jobs(env_credentials)])
def sage_jobs(
    credentials_block: str | None = None,
    limits: tuple[int, ...] = (10**4, 10**5, 10**6),
    chunks: int = 4,
) -> list[dict[str, int]]:
    """Several SageMath jobs in parallel with ``.map`` (exec jobs: no cell time limit).

    Each computes the Mertens function and the prime count up to one limit, streaming its
    progress to the flow-run log, with an artifact of its CPU and memory samples. Cancelling
    the flow run cancels the jobs still running.
    """
    credentials = load_credentials(credentials_block)
    futures = run_command.map(
        unmapped(credentials),
        code=unmapped(SCRIPT.read_text()),
        interpreter=unmapped("sage"),
        env=[{"LIMIT": str(limit), "CHUNKS": str(chunks)} for limit in limits],
        timeout=unmapped(1800),
    )
    return [checked(future.result().stdout) for future in futures]


@flow(name="cocalc-long-job", on_cancellation=[cancel_cocalc_jobs(env_credentials)])
def long_job(command: str, credentials_block: str | None = None) -> dict[str, Any]:
    """One shell command as a job, of any length; the flow returns its compact summary."""
    result = run_command(load_credentials(credentials_block), command, as_dict=True)
    return dict(result)  # type: ignore[call-overload]


#: The report notebook the Airflow example runs too.
REPORT = Path(__file__).resolve().parent / "notebooks" / "weekly_check.ipynb"


@flow(name="cocalc-notebook-report", on_cancellation=[cancel_cocalc_jobs(env_credentials)])
def notebook_report(
    n: int = 1000, output: str | None = None, credentials_block: str | None = None
) -> dict[str, Any]:
    """Run the report notebook with ``n`` injected; the executed notebook is saved to
    ``output`` (default a temporary file) and linked from the run's artifact."""
    target = output or os.path.join(tempfile.gettempdir(), f"cocalc-report-{n}.ipynb")
    result = run_notebook(
        load_credentials(credentials_block),
        str(REPORT),
        {"n": n, "title": f"report for n={n}"},
        output=target,
    )
    return {"output": result.output, **result.results}
