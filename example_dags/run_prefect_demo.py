"""``make demo`` step: run the example Prefect flows against ``COCALC_HOST``, offline."""

from __future__ import annotations

import os
import sys
import tempfile


def offline_prefect_environment(home: str) -> None:
    """Private PREFECT_HOME, no telemetry, quiet logs (see docs/prefect.md §5)."""
    os.environ.update(
        {
            "PREFECT_HOME": home,
            "PREFECT_MEMO_STORE_PATH": os.path.join(home, "memo_store.toml"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "PREFECT_LOGGING_LEVEL": "WARNING",
            "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
        }
    )


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="prefect-demo-") as home:
        offline_prefect_environment(home)
        from example_dags.prefect_flows import compute_and_pass, map_snippets

        print("flow cocalc-compute-and-pass returned", compute_and_pass())
        print("flow cocalc-map-snippets returned", map_snippets())
    return 0


if __name__ == "__main__":
    sys.exit(main())
