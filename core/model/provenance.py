"""Where a model came from, written without the paths of the machine that made it.

A model card travels: it is committed, shipped in the wheel, copied to other machines.
What it says about its origin (data sets, run folders, command lines, the torch build)
must therefore not name folders of the machine it was trained on. Data sets are named
and fingerprinted (:func:`heritage.training.data.dataset_records`); every other text of
the card's ``training`` section goes through :func:`without_machine_paths` when the
card is written. Standard library only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

#: an absolute POSIX path (``/a/b``, ``/a/b/``, ``~/a``) inside a text: not after a word
#: character, a dot, a colon or a slash, so that relative paths (``../shared/x``,
#: ``research/x``) and URLs (``https://host/x``) are left alone
_ABSOLUTE = re.compile(r"(?<![\w.:/~])(?:~/|/(?=[^\s'\"/]+/))(?:/?[^\s'\"/,;)\]]+)+/?")


def _last_part(match: re.Match[str]) -> str:
    parts = [p for p in match.group(0).split("/") if p and p != "~"]
    return parts[-1] if parts else match.group(0)


def without_machine_paths(value: Any) -> Any:
    """``value`` (JSON-like: dicts, lists, texts, paths) with every absolute path replaced
    by its last part (``/data/sets/brickwork-cracks`` -> ``brickwork-cracks``), also
    inside texts such as command lines. Relative paths, URLs and numbers are kept."""
    if isinstance(value, PurePath):
        return value.name if value.is_absolute() else value.as_posix()
    if isinstance(value, str):
        return _ABSOLUTE.sub(_last_part, value)
    if isinstance(value, Mapping):
        return {str(k): without_machine_paths(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [without_machine_paths(v) for v in value]
    return value


def machine_paths(value: Any) -> list[str]:
    """Every absolute path found in ``value`` (empty when it is portable)."""
    found: list[str] = []
    if isinstance(value, PurePath):
        return [str(value)] if value.is_absolute() else []
    if isinstance(value, str):
        return [m.group(0) for m in _ABSOLUTE.finditer(value)]
    if isinstance(value, Mapping):
        for k, v in value.items():
            found += machine_paths(k) + machine_paths(v)
    elif isinstance(value, list | tuple):
        for v in value:
            found += machine_paths(v)
    return found


def release_version(version: str) -> str:
    """A version without its local part: torch's ``2.14.1+cu130`` -> ``2.14.1`` (the
    CUDA build tag says which machine built the model, not which torch it needs)."""
    return str(version).split("+", 1)[0]
