"""The HTTP face of the local server.

- :mod:`~cocalc_tasks.server.http.app`: the FastAPI app and CoCalc's routes (``/api/v2/jupyter/*``,
  ``/api/v2/exec``, the hub's ``/api/v2/jupyter`` calls and the status page);
- :mod:`~cocalc_tasks.server.http.project_bridge`: ``POST /api/conat/project``, the project
  bridge of CoCalc master and cocalc-ai.
"""
