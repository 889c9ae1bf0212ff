"""Reviewed photos as labelled images: the export folder and the fine-tuning data.

:func:`reviewed_items` turns the current reviews of a survey (:mod:`heritage.io.reviews`,
one per photo and tile box; ``unsure`` is left out) into labelled items:

* **what image**: the review's tile box when it is about one tile; else, for a photo
  classified in scene or tiles mode, its strongest tile (``best_box_*`` of the
  observation: the part of the facade the model judged, at the scale it was trained
  on); else the whole photo (whole-image mode, close-ups);
* **export class** (:func:`export_class`): the defect type of a confirmed or missed
  defect (``other`` when none was given), ``no_defect`` for a false alarm;
* **held out for evaluation** (:func:`is_held_out`): a photo is held out when the
  first 8 hex digits of its sha256, read as a number, fall in the first ``share`` of
  their range (``int(sha256[:8], 16) < share * 16**8``): deterministic, the same in
  every survey and on every machine, and all tiles of one photo on the same side.

:func:`export_reviews` writes them as an ImageFolder (``DIR/<class>/<file>.jpg``) with
``manifest.csv``; :func:`model_label` maps an item to a class of a model's stage 1 for
``heritage finetune``.
"""

from __future__ import annotations

import csv
import logging
import sqlite3
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from heritage.io.reviews import (
    FALSE_ALARM,
    OBSERVATIONS,
    POSITIVE_VERDICTS,
    Box,
    connect_ro,
    current_by_key,
)
from heritage.kernel.errors import DataError, InputNotFoundError

if TYPE_CHECKING:
    from PIL import Image

logger = logging.getLogger(__name__)

#: export class of a false alarm
NO_DEFECT = "no_defect"
#: share of the reviewed photos held out for evaluation by default
HOLD_OUT_SHARE = 0.2
#: defect type -> the stage-1 class it teaches, when the model has that class
TYPE_TO_LABEL = {"crack": "crack", "salt": "salt_damage"}
#: negative classes, in order of preference, for a false alarm
NEGATIVE_LABELS = ("no_crack", "healthy", "no_defect", "negative")
MANIFEST = "manifest.csv"
MANIFEST_COLUMNS = (
    "file", "class", "sha256", "verdict", "defect_type", "reviewer", "reviewed_at",
    "box", "held_out", "photo_path", "note",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class ReviewedItem:
    """One current review as a labelled image of a photo (or of one box of it)."""

    sha256: str
    photo: Path
    box: Box | None
    verdict: str
    defect_type: str | None
    reviewer: str
    reviewed_at: str
    note: str | None
    stage1_label: str | None
    held_out: bool
    #: the photo's path as the survey stores it (relative to the survey's folder)
    photo_path: str = ""

    @property
    def positive(self) -> bool:
        """A confirmed or missed defect (False: a false alarm)."""
        return self.verdict in POSITIVE_VERDICTS

    @property
    def export_class(self) -> str:
        """The ImageFolder class of the export (:func:`export_class`)."""
        return export_class(self.verdict, self.defect_type)

    @property
    def file_name(self) -> str:
        """``<sha256[:16]>.jpg``, with ``_<l>_<t>_<r>_<b>`` for a box."""
        suffix = "" if self.box is None else "_" + "_".join(str(v) for v in self.box)
        return f"{self.sha256[:16]}{suffix}.jpg"


def export_class(verdict: str, defect_type: str | None) -> str:
    """``no_defect`` for a false alarm, else the defect type (``other`` without one)."""
    return NO_DEFECT if verdict == FALSE_ALARM else (defect_type or "other")


def is_held_out(sha256: str, share: float = HOLD_OUT_SHARE) -> bool:
    """The documented hold-out rule: ``int(sha256[:8], 16) < share * 16**8``."""
    if not 0.0 <= share < 1.0:
        raise ValueError(f"hold-out share must be in [0, 1), got {share}")
    return int(sha256[:8], 16) < share * 16**8


def _observations(path: Path) -> dict[str, dict[str, Any]]:
    cols = (
        "sha256", "path", "inference_mode", "stage1_label",
        "best_box_left", "best_box_top", "best_box_right", "best_box_bottom",
    )  # fmt: skip
    con = connect_ro(path)
    try:
        con.row_factory = sqlite3.Row
        have = {r[1] for r in con.execute(f'PRAGMA table_info("{OBSERVATIONS}")')}
        if not have:
            raise DataError(f"{path} has no observations; give a survey classified by heritage")
        sel = ", ".join(f'"{c}"' if c in have else f'NULL AS "{c}"' for c in cols)
        rows = con.execute(f'SELECT {sel} FROM "{OBSERVATIONS}"').fetchall()
    finally:
        con.close()
    return {r["sha256"]: dict(r) for r in rows if r["sha256"]}


def _best_box(obs: dict[str, Any]) -> Box | None:
    vals = [obs.get(f"best_box_{k}") for k in ("left", "top", "right", "bottom")]
    if obs.get("inference_mode") == "whole" or any(v is None for v in vals):
        return None
    left, top, right, bottom = (int(v) for v in vals)  # type: ignore[arg-type]
    return (left, top, right, bottom) if right > left and bottom > top else None


def reviewed_items(
    survey: str | Path, share: float = HOLD_OUT_SHARE, photo_root: str | Path | None = None
) -> list[ReviewedItem]:
    """The current reviews of ``survey`` (except ``unsure``) as labelled items, in the
    order of their review. Photo paths are relative to the survey's folder (or to
    ``photo_root``); a review of a photo no longer in ``observations`` is skipped."""
    survey = Path(survey)
    if not survey.is_file():
        raise InputNotFoundError(f"survey GeoPackage not found: {survey}")
    base = Path(photo_root) if photo_root is not None else survey.parent
    obs = _observations(survey)
    items = []
    for review in current_by_key(survey).values():
        row = obs.get(review.sha256)
        if row is None or review.verdict not in (*POSITIVE_VERDICTS, FALSE_ALARM):
            continue
        items.append(
            ReviewedItem(
                sha256=review.sha256,
                photo=base / str(row["path"]),
                box=review.box or _best_box(row),
                verdict=review.verdict,
                defect_type=review.defect_type,
                reviewer=review.reviewer,
                reviewed_at=review.reviewed_at,
                note=review.note,
                stage1_label=row.get("stage1_label"),
                held_out=is_held_out(review.sha256, share),
                photo_path=str(row["path"]),
            )
        )
    return items


def load_item_image(item: ReviewedItem) -> Image.Image:
    """The item's image: the photo (EXIF orientation applied, RGB) cropped to its box."""
    from heritage.model.predict import load_survey_image

    try:
        image = load_survey_image(item.photo)
    except OSError as exc:
        raise InputNotFoundError(
            f"cannot read the reviewed photo {item.photo} ({exc}); keep the photos where the "
            "survey found them (paths are relative to the GeoPackage) or pass --photo-root"
        ) from exc
    if item.box is None:
        return image
    left, top, right, bottom = item.box
    w, h = image.size
    return image.crop((max(0, left), max(0, top), min(w, right), min(h, bottom)))


def model_label(item: ReviewedItem, labels: Sequence[str], positives: Sequence[str]) -> str:
    """The stage-1 class an item teaches a model with ``labels`` (``positives`` among them).

    A false alarm: the first of :data:`NEGATIVE_LABELS` the model has (else its first
    non-positive class). A confirmed or missed defect: the class of its type
    (:data:`TYPE_TO_LABEL`) when the model has it, else the model's own stage-1 label
    of the photo when that is a positive class, else the first positive class.
    """
    if not item.positive:
        negatives = [c for c in labels if c not in positives]
        if not negatives:
            raise DataError("the model has no negative class to learn a false alarm from")
        return next((c for c in NEGATIVE_LABELS if c in negatives), negatives[0])
    wanted = TYPE_TO_LABEL.get(item.defect_type or "")
    if wanted in positives:
        return wanted  # type: ignore[return-value]
    if item.stage1_label in positives:
        return str(item.stage1_label)
    if not positives:
        raise DataError("the model has no positive class to learn a defect from")
    return positives[0]


def export_reviews(
    survey: str | Path,
    out_dir: str | Path,
    share: float = HOLD_OUT_SHARE,
    photo_root: str | Path | None = None,
) -> dict[str, Any]:
    """Write the reviewed photos/tiles of ``survey`` as ``out_dir/<class>/<file>.jpg`` and
    ``out_dir/manifest.csv`` (one row per image). Returns ``{"images", "classes",
    "missing", "out_dir"}``; a photo that cannot be read is counted in ``missing`` and
    logged, the others are written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    counts: Counter[str] = Counter()
    missing = 0
    rows = []
    for item in reviewed_items(survey, share, photo_root):
        try:
            image = load_item_image(item)
        except InputNotFoundError as exc:
            logger.warning("%s", exc)
            missing += 1
            continue
        folder = out / item.export_class
        folder.mkdir(exist_ok=True)
        image.save(folder / item.file_name, format="JPEG", quality=92)
        counts[item.export_class] += 1
        rows.append(
            {
                "file": f"{item.export_class}/{item.file_name}",
                "class": item.export_class,
                "sha256": item.sha256,
                "verdict": item.verdict,
                "defect_type": item.defect_type or "",
                "reviewer": item.reviewer,
                "reviewed_at": item.reviewed_at,
                "box": "" if item.box is None else ",".join(str(v) for v in item.box),
                "held_out": int(item.held_out),
                "photo_path": item.photo_path,
                "note": item.note or "",
            }
        )
    with open(out / MANIFEST, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=MANIFEST_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return {"images": len(rows), "classes": dict(counts), "missing": missing, "out_dir": str(out)}
