"""A shell step on CoCalc that holds its worker slot: the non-deferrable job operator.

The command runs in the project as an exec job; each line it prints appears in the task log
while it runs. If the worker dies mid-job, the retry re-attaches to the same job (Airflow 3.3's
task state store): the command never runs twice. ``runs.log`` in the project counts its starts.
"""

from __future__ import annotations

from airflow.sdk import Param, dag

from airflow_provider.operators.job import CocalcRunOperator

STEPS = """\
echo "started $(date -u +%FT%TZ)" >> runs.log
for i in $(seq {{ params.seconds }}); do
  echo "step $i/{{ params.seconds }}: $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg)"
  sleep 1
done
echo "done after {{ params.seconds }} steps"
"""


@dag(
    dag_id="cocalc_command_job",
    schedule=None,
    catchup=False,
    tags=["cocalc", "example", "long"],
    params={
        "project_id": Param(
            "", type="string", description="CoCalc project (empty: the connection's)"
        ),
        "seconds": Param(20, type="integer", minimum=1),
    },
)
def cocalc_command_job() -> None:
    CocalcRunOperator(
        task_id="steps",
        command=STEPS,
        project_id="{{ params.project_id }}",
        timeout=600,
        deferrable=False,
        poll_interval=1.0,
        retries=1,
    )


dag = cocalc_command_job()
