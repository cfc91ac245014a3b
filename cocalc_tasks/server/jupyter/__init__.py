"""Stateless Jupyter execution, as CoCalc's ``/api/v2/jupyter/execute`` does it.

- :mod:`~cocalc_tasks.server.jupyter.service`: one call end to end (checks, cache, quota, pool,
  run, store);
- :mod:`~cocalc_tasks.server.jupyter.kernelspecs`: the kernels served, and their aliases;
- :mod:`~cocalc_tasks.server.jupyter.pool`: warm kernels per kernelspec and area;
- :mod:`~cocalc_tasks.server.jupyter.kernel`: one started kernel and its disposal;
- :mod:`~cocalc_tasks.server.jupyter.execute`: running one cell on a kernel;
- :mod:`~cocalc_tasks.server.jupyter.outputs`: CoCalc's output filter and limits;
- :mod:`~cocalc_tasks.server.jupyter.quotas`: CoCalc's hourly compute quotas;
- :mod:`~cocalc_tasks.server.jupyter.phases`: where one call's time goes, for ``/metrics``.
"""
