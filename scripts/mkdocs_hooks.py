"""MkDocs hooks of the documentation site (``mkdocs.yml``: ``hooks``).

The docstrings mkdocstrings shows use Sphinx roles (``:func:`heritage.x```); rendered
as Markdown they read ``:func:<code>heritage.x</code>``. The hook drops the role and
the ``~`` prefix (which in Sphinx shows the last name only) and keeps the code.
"""

from __future__ import annotations

import re

_ROLE = re.compile(r":(?:func|class|meth|mod|attr|data|exc|obj):(<code>)~?([\w.]+)(</code>)")


def _short(match: re.Match[str]) -> str:
    name = match.group(2)
    return f"{match.group(1)}{name}{match.group(3)}"


def on_page_content(html: str, **_: object) -> str:
    """Sphinx roles in rendered docstrings -> plain code."""
    return _ROLE.sub(_short, html)
