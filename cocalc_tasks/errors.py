"""The one error hierarchy used by the client, the CLI, Airflow and Prefect.

Every class derives from :class:`CocalcError` and carries ``transient``: ``True`` when trying the
same call again later may succeed, so orchestrator retry policies read that flag instead of
keeping their own lists. CoCalc's ``{"error": ...}`` messages become these classes through
:func:`error_from_message`.

The classes are defined where they belong (the base in :mod:`cocalc_tasks.model.errors`, the
ones that carry a result beside that result); this module is where users import them from.
Those that live beside a result load with it, on first use, so ``import cocalc_tasks`` stays
light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cocalc_tasks._lazy import lazy_exports
from cocalc_tasks.model import errors as _base
from cocalc_tasks.model.errors import *  # noqa: F403  (the base classes, named in its __all__)

#: The classes defined beside the result they carry, and the message map that needs them.
_EXPORTS = {
    "CocalcCommandError": "cocalc_tasks.model.command_results",
    "CocalcCommandTimeoutError": "cocalc_tasks.model.command_results",
    "CocalcExecutionError": "cocalc_tasks.model.results",
    "error_from_message": "cocalc_tasks.model.messages",
}

__all__ = sorted([*_base.__all__, *_EXPORTS])

__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)

if TYPE_CHECKING:
    from cocalc_tasks.model.command_results import CocalcCommandError as CocalcCommandError
    from cocalc_tasks.model.command_results import (
        CocalcCommandTimeoutError as CocalcCommandTimeoutError,
    )
    from cocalc_tasks.model.messages import error_from_message as error_from_message
    from cocalc_tasks.model.results import CocalcExecutionError as CocalcExecutionError
