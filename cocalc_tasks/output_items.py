"""Output items, the typed union every view matches on (defined in
:mod:`cocalc_tasks.model.output_items`; importable here, where the guide names them)."""

from __future__ import annotations

from cocalc_tasks.model import output_items as _defined
from cocalc_tasks.model.output_items import *  # noqa: F403  (named in its __all__)

__all__ = list(_defined.__all__)
