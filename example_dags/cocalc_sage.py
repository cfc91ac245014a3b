"""A SageMath step written for cocalc.com: factor an integer and check the factorisation.

The kernel is a templated param (``sage-10.4`` on cocalc.com; the local server maps such names
to passagemath's ``sagemath`` kernel with ``--kernel-alias``). ``setup`` is an optional list of
history cells replayed before the code.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Param, dag, task

from airflow_provider.operators.cocalc import CocalcExecuteOperator


@dag(
    dag_id="cocalc_sage",
    schedule=None,
    catchup=False,
    tags=["cocalc", "sage", "example"],
    params={
        "kernel": Param("sage-10.4", type="string", description="CoCalc kernel name"),
        "n": Param(2023, type="integer", minimum=2),
        "setup": Param([], type="array", description="history cells replayed first"),
    },
    render_template_as_native_obj=True,
)
def cocalc_sage() -> None:
    factor = CocalcExecuteOperator(
        task_id="factor",
        kernel="{{ params.kernel }}",
        input="factor({{ params.n }})",
        history="{{ params.setup }}",
    )

    @task
    def check(result: dict[str, Any], params: dict[str, Any] | None = None) -> str:
        factored: str = result["text"]
        product = 1
        for term in factored.split("*"):
            base, _, exponent = term.strip().partition("^")
            product *= int(base) ** int(exponent or 1)
        assert params is not None and product == params["n"], (factored, params)
        return factored

    check(factor.output)


dag = cocalc_sage()
