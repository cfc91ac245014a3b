"""A real Airflow deployment for the tests: API server, scheduler, dag-processor and triggerer,
each its own process, as a team runs them (LocalExecutor, its own AIRFLOW_HOME and ports).

``dag.test()`` is not a scheduler: it runs triggers in line and sets a logical date. This is
what the tests use where that difference matters (a deferred task's timeout, a manual run).
Everything it starts is stopped when the ``with`` block ends.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.flaky_server import closed_port

#: The components, each an ``airflow`` sub-command in a process of its own.
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")


class AirflowDeployment:
    """A running deployment: run ``airflow`` commands against it and read its database."""

    def __init__(self, home: Path, env: Mapping[str, str], procs: dict[str, subprocess.Popen[Any]]):
        self.home = home
        self.env = dict(env)
        self.procs = procs

    def airflow(self, *args: str, timeout: float = 120) -> str:
        """Run ``airflow ARGS`` against the deployment; its stdout."""
        done = subprocess.run(
            [sys.executable, "-m", "airflow", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode:
            raise AssertionError(f"airflow {' '.join(args)}: {done.stderr[-3000:]}")
        return done.stdout

    def extra_links(self, dag_id: str, run_id: str, task_id: str) -> dict[str, str | None]:
        """A task's extra links as the UI asks for them: the API server's links endpoint, with
        the token the all-admins auth manager hands out."""
        import requests

        api = f"http://127.0.0.1:{self.env['AIRFLOW__API__PORT']}"
        token = requests.get(f"{api}/auth/token", timeout=30).json()["access_token"]
        response = requests.get(
            f"{api}/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/links",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        response.raise_for_status()
        body = response.json()  # {"extra_links": {name: url}, "total_entries": n}
        links: dict[str, str | None] = body.get("extra_links", body)
        return links

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.home / "airflow.db", timeout=30) as db:
            return db.execute(sql, params).fetchall()

    def wait_for_dag(self, dag_id: str, within: float = 180) -> None:
        """Until the dag-processor has stored ``dag_id`` (then it can be triggered)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            self.check_alive()
            if self.query("select 1 from serialized_dag where dag_id = ?", dag_id):
                return
            time.sleep(1)
        raise AssertionError(f"the dag-processor never stored {dag_id}: {self.logs()}")

    def trigger(self, dag_id: str, conf: Mapping[str, Any] | None = None) -> str:
        """Trigger a run by hand (no logical date, as from the UI); its run id."""
        self.airflow("dags", "unpause", dag_id)
        out = self.airflow(
            "dags", "trigger", dag_id, "--conf", json.dumps(conf or {}), "-o", "json"
        )
        runs = [line for line in out.splitlines() if line.startswith("[")]  # no log lines
        return str(json.loads(runs[-1])[0]["dag_run_id"])

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        rows = self.query(
            "select task_id, state from task_instance where dag_id = ? and run_id = ?",
            dag_id,
            run_id,
        )
        return {task: state for task, state in rows}

    def wait_for_run(self, dag_id: str, run_id: str, within: float = 240) -> str:
        """Until the run ends; its state."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            self.check_alive()
            rows = self.query(
                "select state from dag_run where dag_id = ? and run_id = ?", dag_id, run_id
            )
            if rows and rows[0][0] in ("success", "failed"):
                return str(rows[0][0])
            time.sleep(1)
        raise AssertionError(f"{dag_id} {run_id} never ended: {self.task_states(dag_id, run_id)}")

    def restart(self, name: str) -> None:
        """Stop a component (SIGTERM, as a deploy or a crash-looping pod does) and start it
        again; its output goes on in the same file."""
        proc = self.procs[name]
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(60)
        self.procs[name] = self._start(name)

    def _start(self, name: str) -> subprocess.Popen[Any]:
        with (self.home / f"{name}.out").open("a") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "airflow", name],
                env=self.env,
                cwd=self.home,  # where tasks write relative paths
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: stopping it stops what it started
            )

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise AssertionError(f"airflow {name} exited ({proc.returncode}): {self.logs()}")

    def logs(self) -> str:
        return "\n".join(
            f"--- {name}\n{(self.home / f'{name}.out').read_text()[-3000:]}" for name in self.procs
        )

    def task_log(self, dag_id: str, run_id: str, task_id: str) -> str:
        """Every log file the task's tries wrote, concatenated."""
        folder = self.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        return "\n".join(p.read_text() for p in sorted(folder.rglob("*.log")))


@contextmanager
def airflow_deployment(
    home: Path, dags_folder: Path, extra_env: Mapping[str, str] | None = None
) -> Iterator[AirflowDeployment]:
    """Start the four components on a fresh SQLite database in ``home``; stop them after."""
    port = closed_port()
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__FERNET_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__TRIGGER_TIMEOUT_CHECK_INTERVAL": "2",
        "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        **(extra_env or {}),
    }
    env.pop("AIRFLOW__CORE__SQL_ALCHEMY_CONN", None)
    env.pop("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", None)
    home.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        timeout=300,
    )
    deployment = AirflowDeployment(home, env, {})
    try:
        for name in COMPONENTS:
            deployment.procs[name] = deployment._start(name)
        yield deployment
    finally:
        _stop(deployment.procs)


def _stop(procs: Mapping[str, subprocess.Popen[Any]]) -> None:
    for proc in procs.values():
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    for proc in procs.values():
        try:
            proc.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
