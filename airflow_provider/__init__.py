"""Apache Airflow provider for CoCalc: the ``cocalc`` connection, CocalcHook and operators.

Install with ``pip install "cocalc-tasks[airflow]"``. Targets Airflow 3.0 and newer.
"""

__all__ = ["__version__"]
__version__ = "0.1.0"
