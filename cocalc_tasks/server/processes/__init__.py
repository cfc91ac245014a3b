"""The processes the server starts besides kernels started by jupyter_client, in one vocabulary:

- a **zygote** is a process that has imported a kernel's modules once and forks a kernel per
  request (:mod:`~cocalc_tasks.server.processes.zygote` is its program;
  :mod:`~cocalc_tasks.server.processes.zygotes` is the server's side, with the jupyter_client
  provisioner that asks a zygote for a kernel);
- a **spawner** is a process inside a project's sandbox that forks that project's shell commands
  (:mod:`~cocalc_tasks.server.processes.spawner` is its program;
  :mod:`~cocalc_tasks.server.processes.spawners` is the server's side);
- :mod:`~cocalc_tasks.server.processes.tree` reads the host's process tree.

Both run inside an **area**'s **sandbox** (:mod:`cocalc_tasks.server.sandbox`).
"""
