"""The model card checked as a whole, before any weights are read.

:func:`card_problems` looks at the parsed ``model.json`` (types, ranges, finite
numbers, known CAM methods) and returns every problem it finds, so that a bad card
is refused with one line that lists them all, instead of a traceback (``input_size:
1e999``), a silent failure (``std: NaN`` made every photo "not flagged"; ``input_size:
true`` made every photo ``classification_failed``) or a late error after the weights
were loaded (an unknown ``cam_method``). Standard library only.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

#: the CAM methods heritage.model.explain implements (names as in model.json and --cam-method)
CAM_METHOD_NAMES = ("gradcam", "gradcam++", "eigencam", "layercam", "xgradcam", "hirescam")
#: what Grad-CAM explains: the winning stage-1 class or the sum of the positive classes
CAM_TARGETS = ("predicted", "positive")
#: smallest and largest model input side in pixels
INPUT_SIZE_RANGE = (8, 4096)
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


def is_int(value: Any) -> bool:
    """An integer, and not a boolean (JSON ``true`` is not a size)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite int or float, not a boolean (JSON ``NaN``, ``Infinity``, ``1e999`` are not)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _text(d: Mapping[str, Any], key: str, problems: list[str], *, where: str = "") -> None:
    if key in d and (not isinstance(d[key], str) or not d[key].strip()):
        problems.append(f"{where}{key} must be a non-empty text (got {_show(d[key])})")


def _labels(value: Any) -> bool:
    return isinstance(value, list | tuple) and all(isinstance(v, str) and v for v in value)


def stage_problems(stage: Any, which: str, *, with_weights: bool = True) -> list[str]:
    """What is wrong with one ``stage1``/``stage2`` entry (empty when it is usable)."""
    if not isinstance(stage, Mapping):
        return [f"{which} must be an object (got {_show(stage)})"]
    problems: list[str] = []
    where = f"{which}."
    for key in ("arch", "num_outputs", "labels"):
        if key not in stage:
            problems.append(f"{where}{key} is missing")
    _text(stage, "arch", problems, where=where)
    n = stage.get("num_outputs")
    if "num_outputs" in stage and not (is_int(n) and 1 <= n <= 100_000):
        problems.append(f"{where}num_outputs must be a whole number >= 1 (got {_show(n)})")
    if "labels" in stage and not _labels(stage["labels"]):
        problems.append(f"{where}labels must be a list of texts (got {_show(stage['labels'])})")
    if with_weights:
        if not isinstance(stage.get("weights", ""), str):
            problems.append(f"{where}weights must be a file name (got {_show(stage['weights'])})")
        sha = stage.get("sha256", "")
        if not isinstance(sha, str) or (sha and not _SHA256.match(sha)):
            problems.append(f"{where}sha256 must be 64 hex digits (got {_show(sha)})")
    size = stage.get("size")
    if size is not None and not (is_int(size) and size > 0):
        problems.append(f"{where}size must be the weights' size in bytes (got {_show(size)})")
    return problems


def card_problems(d: Mapping[str, Any]) -> list[str]:
    """Every problem of a parsed model card (empty when it can be used).

    Checks types (no booleans for numbers, objects where objects belong), ranges
    (``input_size`` in :data:`INPUT_SIZE_RANGE`, ``threshold`` and ``stage2_cam_alpha``
    in [0, 1], ``std`` > 0), finite numbers, known CAM methods and targets, a pruning
    record with its ratio. ``d`` has the version-2 layout (``cam_target`` and ``pruning``
    at the top; :meth:`heritage.model.card.ModelCard.from_dict` moves a version-1 card's).
    Consistency between fields is :meth:`heritage.model.card.ModelCard.validate`'s.
    """
    problems: list[str] = []
    for key in ("model_id", "version", "cam_layer"):
        _text(d, key, problems)
    for key in ("created", "notes"):
        if key in d and not isinstance(d[key], str):
            problems.append(f"{key} must be a text (got {_show(d[key])})")
    method = d.get("cam_method")
    if "cam_method" in d and (
        not isinstance(method, str) or method.lower() not in CAM_METHOD_NAMES
    ):
        problems.append(
            f"cam_method {_show(method)} is unknown (known: {', '.join(CAM_METHOD_NAMES)})"
        )
    size = d.get("input_size")
    lo, hi = INPUT_SIZE_RANGE
    if "input_size" in d and not (is_int(size) and lo <= size <= hi):
        problems.append(
            f"input_size must be a whole number of pixels in {lo}..{hi} (got {_show(size)})"
        )
    for key, positive in (("mean", False), ("std", True)):
        if key not in d:
            continue
        v = d[key]
        ok = isinstance(v, list | tuple) and len(v) == 3 and all(is_number(x) for x in v)
        if not ok or (positive and min(v) <= 0):
            need = "3 finite numbers > 0" if positive else "3 finite numbers"
            problems.append(f"{key} must be {need} (got {_show(v)})")
    for key in ("threshold", "stage2_cam_alpha"):
        if key in d and not (is_number(d[key]) and 0.0 <= d[key] <= 1.0):
            problems.append(f"{key} must be a number in [0, 1] (got {_show(d[key])})")
    if "positive_labels" in d and not (_labels(d["positive_labels"]) and d["positive_labels"]):
        problems.append(
            f"positive_labels must be a list of texts (got {_show(d['positive_labels'])})"
        )
    for key in ("training", "metrics", "scene"):
        if key in d and not isinstance(d[key], Mapping):
            problems.append(f"{key} must be an object (got {_show(d[key])})")
    target = d.get("cam_target")
    if "cam_target" in d and target not in CAM_TARGETS:
        problems.append(f"cam_target must be one of {', '.join(CAM_TARGETS)} (got {_show(target)})")
    pruning = d.get("pruning")
    if pruning is not None and not (
        isinstance(pruning, Mapping) and is_number(pruning.get("ratio"))
    ):
        problems.append(f"pruning must be null or an object with a ratio (got {_show(pruning)})")
    if "stage1" in d:
        problems += stage_problems(d["stage1"], "stage1")
    if d.get("stage2") is not None:
        problems += stage_problems(d["stage2"], "stage2")
    return problems
