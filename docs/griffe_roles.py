"""Griffe extension for the API reference: Sphinx roles in docstrings become Markdown code.

The docstrings say ``:class:`~ctxrec.queries.QueryBatch``` (readable in an editor and in ``help()``);
mkdocstrings renders Markdown, where the role would show as written. ``~`` keeps the last name only.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|meth|func|attr|mod|data|exc|obj|const):`(~?)([^`]+)`")


def _plain(m: re.Match[str]) -> str:
    target = m.group(2).strip()
    return f"`{target.rsplit('.', 1)[-1] if m.group(1) else target}`"


class SphinxRoles(griffe.Extension):
    def on_instance(self, *, node: Any, obj: griffe.Object, agent: Any, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _ROLE.sub(_plain, obj.docstring.value)
