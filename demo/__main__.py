"""``make demo``: the main job, end to end, on the embedded local CoCalc-compatible server.

It starts ``cocalc-tasks serve`` on a free loopback port, runs pipeline steps against it (the
CLI, the Python API, and the Airflow DAG and Prefect flow when their environments exist), prints
what each step returned, and stops the server with all its kernels.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cocalc_tasks import CocalcClient, CocalcExecutionError, KernelSession
from cocalc_tasks.testing import LocalServer

ROOT = Path(__file__).resolve().parent.parent
DEMO_KEY = "sk-demo-local-only"
DEMO_PROJECT = "00000000-0000-4000-8000-00000000de70"


def banner(text: str) -> None:
    print(f"\n== {text}", flush=True)


def cli(*args: str, env: dict[str, str]) -> None:
    shown = " ".join(a if " " not in a and "\n" not in a else repr(a) for a in args)
    print(f"$ cocalc-tasks {shown}", flush=True)
    code = subprocess.call([sys.executable, "-m", "cocalc_tasks", *args], env=env)
    print(f"(exit code {code})", flush=True)


def server_python() -> tuple[str, bool]:
    """The Sage environment's python when it exists (`make sage-env`), else this one."""
    sage = ROOT / ".venv-sage/bin/python"
    return (str(sage), True) if sage.exists() else (sys.executable, False)


def run_integration(venv: str, module: str, env: dict[str, str]) -> None:
    python = ROOT / venv / "bin/python"
    if not python.exists():
        print(f"(skipped: {venv} is not built; `make test` builds it)")
        return
    quiet = {**env, "PYTHONWARNINGS": "ignore::DeprecationWarning,ignore::FutureWarning"}
    subprocess.call([str(python), "-m", module], env=quiet, cwd=ROOT)


def main() -> int:
    python, has_sage = server_python()
    with (
        tempfile.TemporaryDirectory(prefix="cocalc-demo-") as data,
        LocalServer(
            data_dir=data,
            api_keys=[DEMO_KEY],
            args=["--kernels", "python3,bash"],  # with Sage, sage-9.8 is served too
            python=python,
        ) as server,
    ):
        print(f"local CoCalc-compatible server at {server.url} (data in {data})")
        env = {
            **os.environ,
            "COCALC_HOST": server.url,
            "COCALC_API_KEY": DEMO_KEY,
            "COCALC_PROJECT_ID": DEMO_PROJECT,
            "COCALC_DEMO_SAGE": "1" if has_sage else "",
        }

        banner("1. the kernels this server offers")
        cli("kernels", env=env)

        banner("2. the seed's examples through the CLI")
        cli("exec", "--kernel", "python3", "print(2+3)", env=env)
        cli("exec", "--kernel", "bash", "echo hello from $SHELL on $(uname -s)", env=env)

        banner("3. a numerical check from Python, with state carried by history replay")
        with CocalcClient(api_key=DEMO_KEY, host=server.url) as client:
            session = KernelSession("python3", client=client)
            session.run(
                "import math\nxs = [math.sin(k / 10) ** 2 + math.cos(k / 10) ** 2"
                " for k in range(1000)]"
            )
            check = session.run("print(f'max |sin^2+cos^2-1| = {max(abs(x - 1) for x in xs):.2e}')")
            print(check.stdout, end="")

            banner("4. a remote exception is a typed error with a clean traceback")
            try:
                client.execute(
                    "def ratio(a, b):\n    return a / b\nratio(1, 0)", "python3"
                ).raise_for_error()
            except CocalcExecutionError as exc:
                print(exc.full_message)

            banner("5. the server's result cache (CoCalc's content hash)")
            started = time.perf_counter()
            first = client.execute("sum(range(10**6))", "python3")
            second = client.execute("sum(range(10**6))", "python3")
            took = (time.perf_counter() - started) * 1000
            print(
                f"result {first.text}; second call from cache: {second.from_cache} "
                f"(id {second.cache_id}); both calls {took:.0f} ms; hash {first.hash}"
            )

            if has_sage:
                banner("6. SageMath: the seed's factor(2023) on kernel sage-9.8")
                sage = client.execute("factor(2023)", "sage-9.8", timeout=(10, 180))
                print(f"factor(2023) = {sage.text}")
            else:
                banner("6. SageMath")
                print(
                    "(skipped: `make sage-env` installs passagemath for factor(2023); "
                    "see docs/server/sage.md)"
                )

        banner("7. a long job through the exec API: no cell limit, output streamed as it comes")
        cli(
            "run",
            "-p",
            DEMO_PROJECT,
            "--",
            "bash",
            "-c",
            "for i in 1 2 3; do echo step $i of 3; sleep 0.5; done",
            env=env,
        )
        with CocalcClient(api_key=DEMO_KEY, host=server.url, project_id=DEMO_PROJECT) as client:
            if has_sage:
                script = client.run_script("factor(2^255-1)", interpreter="sage", timeout=120)
                print(f"Sage script, factor(2^255-1) = {script.stdout.strip()}")
            job = client.submit("sleep 0.3; echo job done", timeout=60)
            result = client.wait(job)
            print(
                f"job {job.job_id}: {result.status}, exit code {result.exit_code}, "
                f"{result.stdout.strip()!r} in {result.elapsed:.2f} s"
            )

        banner("8. the Airflow DAG, run with dag.test() against this server")
        run_integration(".venv-airflow", "demo.airflow_steps", env)

        banner("9. the Prefect flow, run against this server")
        run_integration(".venv-prefect", "demo.prefect_steps", env)

    banner("done: server stopped, kernels shut down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
