"""``make demo`` step: run the example Prefect flows against ``COCALC_HOST``, offline."""

from __future__ import annotations

import os
import sys
import tempfile

from cocalc_tasks.testing.prefect import offline_environment


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="prefect-demo-") as home:
        offline_environment(home)
        from example_dags.prefect_flows import (
            compute_and_pass,
            map_snippets,
            notebook_report,
            sage_jobs,
        )

        print("flow cocalc-compute-and-pass returned", compute_and_pass())
        print("flow cocalc-map-snippets returned", map_snippets())
        report = notebook_report(n=500)
        print(f"flow cocalc-notebook-report saved the executed notebook at {report['output']}")
        print("   its result cells:", {k: v for k, v in report.items() if k != "output"})
        if os.environ.get("COCALC_DEMO_SAGE"):
            print("flow cocalc-sage-jobs returned", sage_jobs(limits=(10**4, 10**5, 10**6)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
