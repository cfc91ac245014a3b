"""A griffe extension for the API reference: the Sphinx roles the docstrings use
(``:class:`~cocalc_tasks.errors.CocalcError```) become cross-references to the reference pages.

They are *optional* references: a role naming something the reference does not render (a private
helper, a server internal) stays plain code instead of failing the strict build.
"""

from __future__ import annotations

import re
from typing import Any

from griffe import Extension, Object

ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|exc|obj):`(~?)([^`<>\s]+)`")


def _reference(match: re.Match[str]) -> str:
    target = match.group(2).strip()
    title = target.rsplit(".", 1)[-1] if match.group(1) else target
    return f'<autoref optional identifier="{target}"><code>{title}</code></autoref>'


class SphinxRoles(Extension):
    """Rewrite roles in every docstring as griffe loads it."""

    def on_instance(self, *, obj: Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = ROLE.sub(_reference, obj.docstring.value)
