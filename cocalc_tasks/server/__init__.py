"""A local CoCalc-compatible Jupyter API server backed by real kernels (the ``server`` extra).

Start it with ``cocalc-tasks serve``, or from Python with
:class:`cocalc_tasks.server.local_server.LocalServer`. Importing this package loads nothing heavy.
"""
