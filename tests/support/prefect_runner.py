"""A Prefect runner for the cancellation tests: serves the example job flows.

``python -m tests.support.prefect_runner NAME``: deployments ``cocalc-long-job/NAME`` and
``cocalc-sage-jobs/NAME``. The API URL, PREFECT_HOME and the CoCalc settings come from the
parent test's environment; the test stops this process when it is done.
"""

from __future__ import annotations

import sys

from prefect import serve

from example_dags.prefect_flows import long_job, sage_jobs


def main() -> None:
    name = sys.argv[1]
    serve(long_job.to_deployment(name=name), sage_jobs.to_deployment(name=name), limit=8)


if __name__ == "__main__":
    main()
