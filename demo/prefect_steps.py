"""``make demo`` step: run the example Prefect flows against ``COCALC_HOST``, offline."""

from __future__ import annotations

import sys
import tempfile

from cocalc_tasks.testing.prefect import offline_environment


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="prefect-demo-") as home:
        offline_environment(home)
        from example_dags.prefect_flows import compute_and_pass, map_snippets

        print("flow cocalc-compute-and-pass returned", compute_and_pass())
        print("flow cocalc-map-snippets returned", map_snippets())
    return 0


if __name__ == "__main__":
    sys.exit(main())
