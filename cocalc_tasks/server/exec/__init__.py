"""CoCalc's exec API (``/api/v2/exec``): blocking commands and async jobs.

- :mod:`~cocalc_tasks.server.exec.service`: requests, jobs, their store rows and cancels;
- :mod:`~cocalc_tasks.server.exec.commands`: one shell command run and watched as CoCalc does.
"""
