"""Reviews of a survey's findings: the conservator's judgement, kept apart from model output.

A survey GeoPackage holds one attribute table ``reviews``, written by people (the QGIS
review panel, ``heritage review``) and never by a classification:

* **append-only**: every decision is a new row (who, what, when, and the verdict it
  replaces in ``previous_verdict``); SQLite triggers refuse UPDATE and DELETE on the
  table, so a change of mind is a new row and the history stays complete;
* **keyed by the photo's content** (``sha256``), plus a tile box (``box_left`` ...
  ``box_bottom``, photo pixels) when the review is about one tile: a re-classification
  with another model, a moved or renamed photo folder, or ``heritage classify
  --reclassify`` keep every review;
* the **current review** of a photo is its latest row (greatest ``reviewed_at``, then
  the last written); :func:`current_reviews` (per photo) and :func:`current_by_key`
  (per photo and tile box) are the only places that decide it.

What a current review does to the map (:func:`apply_reviews`, used by
:func:`heritage.survey.pipeline.update_priority`): a **false alarm** no longer counts as flagged
(priority ``none``, its building loses it), a **confirmed** finding counts as certain
(``p_final`` 1.0 in the score), a **missed** defect on an unflagged photo counts as a
certain flagged photo (it adds its building), **unsure** changes nothing. The model's
own columns (``flagged``, ``decision``, ``p_final``) are never rewritten: the observation
keeps what the model said, the derived columns (priority, building, ``review``) follow
the reviews.

Standard library only (plus pyogrio through :mod:`heritage.io.gpkg` to create the table).
"""

from __future__ import annotations

import logging
import sqlite3
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from heritage.io.gpkg import Field, LayerSchema, append_batch, list_layers
from heritage.kernel.errors import DataError

logger = logging.getLogger(__name__)

REVIEWS_LAYER = "reviews"
OBSERVATIONS = "observations"

CONFIRMED = "confirmed"
FALSE_ALARM = "false_alarm"
UNSURE = "unsure"
MISSED = "missed"
#: the verdicts, in the order the review panel shows them
VERDICTS: tuple[str, ...] = (CONFIRMED, FALSE_ALARM, UNSURE, MISSED)
VERDICT_LABELS: dict[str, str] = {
    CONFIRMED: "Confirmed",
    FALSE_ALARM: "False alarm",
    UNSURE: "Unsure",
    MISSED: "Missed defect",
}
#: verdicts that make a photo count as a certain finding
POSITIVE_VERDICTS = frozenset({CONFIRMED, MISSED})

#: defect types (code -> label), the short list a reviewer picks from
DEFECT_TYPES: dict[str, str] = {
    "crack": "Crack",
    "salt": "Salt / efflorescence",
    "biological_growth": "Biological growth",
    "crust_soiling": "Crust or soiling",
    "loss_of_material": "Loss of material / spalling",
    "other": "Other",
}

#: the confidence a confirmed or missed defect gets in the priority score
CERTAIN = 1.0

REVIEW_FIELDS: tuple[Field, ...] = (
    Field("sha256"),
    Field("box_left", "int"),
    Field("box_top", "int"),
    Field("box_right", "int"),
    Field("box_bottom", "int"),
    Field("verdict"),
    Field("defect_type"),
    Field("note"),
    Field("reviewer"),
    Field("reviewed_at"),
    Field("previous_verdict"),
    # what the reviewer saw: the model's answer at the time of the review
    Field("photo_path"),
    Field("model_id"),
    Field("model_version"),
    Field("model_decision"),
    Field("p_final", "float"),
)

_NO_CHANGE = "reviews are append-only: record a new review instead of changing one"
_TRIGGERS = (
    f'CREATE TRIGGER IF NOT EXISTS "{REVIEWS_LAYER}_append_only_update" BEFORE UPDATE ON '
    f"\"{REVIEWS_LAYER}\" BEGIN SELECT RAISE(ABORT, '{_NO_CHANGE}'); END",
    f'CREATE TRIGGER IF NOT EXISTS "{REVIEWS_LAYER}_append_only_delete" BEFORE DELETE ON '
    f"\"{REVIEWS_LAYER}\" BEGIN SELECT RAISE(ABORT, '{_NO_CHANGE}'); END",
)


def reviews_schema() -> LayerSchema:
    """The ``reviews`` attribute table (no geometry): one row per review decision."""
    return LayerSchema(REVIEWS_LAYER, REVIEW_FIELDS, geometry_type=None, crs=None)


Box = tuple[int, int, int, int]


@dataclass(frozen=True, slots=True)
class Review:
    """One row of ``reviews``: a decision about a photo (or one tile box of it)."""

    sha256: str
    verdict: str
    reviewer: str
    reviewed_at: str
    defect_type: str | None = None
    note: str | None = None
    box: Box | None = None
    previous_verdict: str | None = None
    photo_path: str | None = None
    model_id: str | None = None
    model_version: str | None = None
    model_decision: str | None = None
    p_final: float | None = None
    fid: int | None = None

    @property
    def key(self) -> tuple[str, Box | None]:
        """``(sha256, box)``: what the review is about."""
        return (self.sha256, self.box)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the box as a list)."""
        d = asdict(self)
        d["box"] = list(self.box) if self.box else None
        return d


def now_utc() -> str:
    """The review time stamp: ISO 8601 in UTC, to the second (sorts as text)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def check_verdict(verdict: str, defect_type: str | None = None) -> None:
    """ValueError (with the choices) for an unknown verdict or defect type."""
    if verdict not in VERDICTS:
        raise ValueError(f"unknown verdict {verdict!r}; choose one of {', '.join(VERDICTS)}")
    if defect_type is not None and defect_type not in DEFECT_TYPES:
        raise ValueError(
            f"unknown defect type {defect_type!r}; choose one of {', '.join(DEFECT_TYPES)}"
        )


def parse_box(text: str | None) -> Box | None:
    """``"LEFT,TOP,RIGHT,BOTTOM"`` (photo pixels) -> a box; ``None``/empty -> None."""
    if not text:
        return None
    try:
        left, top, right, bottom = (round(float(v)) for v in text.split(","))
    except ValueError:
        raise ValueError(f"box {text!r}: give LEFT,TOP,RIGHT,BOTTOM in photo pixels") from None
    if right <= left or bottom <= top or left < 0 or top < 0:
        raise ValueError(f"box {text!r}: needs 0 <= LEFT < RIGHT and 0 <= TOP < BOTTOM")
    return (left, top, right, bottom)


# ------------------------------------------------------------------ reading


def connect_ro(path: str | Path) -> sqlite3.Connection:
    """A read-only sqlite3 connection (a proper file URI: spaces, ``#`` or ``?`` in the
    path are percent-encoded)."""
    return sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)


def has_reviews(path: str | Path) -> bool:
    """True when the GeoPackage has a ``reviews`` table."""
    return REVIEWS_LAYER in list_layers(path)


def _row_review(row: Mapping[str, Any]) -> Review:
    box_vals = [row.get(k) for k in ("box_left", "box_top", "box_right", "box_bottom")]
    box = tuple(int(v) for v in box_vals) if all(v is not None for v in box_vals) else None
    p = row.get("p_final")
    return Review(
        sha256=str(row["sha256"]),
        verdict=str(row["verdict"]),
        reviewer=str(row.get("reviewer") or ""),
        reviewed_at=str(row.get("reviewed_at") or ""),
        defect_type=row.get("defect_type") or None,
        note=row.get("note") or None,
        box=box,  # type: ignore[arg-type]
        previous_verdict=row.get("previous_verdict") or None,
        photo_path=row.get("photo_path") or None,
        model_id=row.get("model_id") or None,
        model_version=row.get("model_version") or None,
        model_decision=row.get("model_decision") or None,
        p_final=None if p is None else float(p),
        fid=row.get("fid"),
    )


def read_history(path: str | Path, sha256: str | None = None) -> list[Review]:
    """Every review of the survey (or of one photo), oldest first: by ``reviewed_at``,
    then in the order written. Empty without a ``reviews`` table."""
    path = Path(path)
    if not path.exists() or not has_reviews(path):
        return []
    cols = ", ".join(f'"{f.name}"' for f in REVIEW_FIELDS)
    sql = f'SELECT fid, {cols} FROM "{REVIEWS_LAYER}"'
    args: tuple[str, ...] = ()
    if sha256 is not None:
        sql += " WHERE sha256 = ?"
        args = (sha256,)
    con = connect_ro(path)
    try:
        con.row_factory = sqlite3.Row
        rows = con.execute(f"{sql} ORDER BY reviewed_at, fid", args).fetchall()
    finally:
        con.close()
    return [_row_review(dict(r)) for r in rows if r["sha256"] and r["verdict"]]


def current_by_key(path: str | Path) -> dict[tuple[str, Box | None], Review]:
    """The current (latest) review of each ``(sha256, tile box)``."""
    return {r.key: r for r in read_history(path)}


def current_reviews(path: str | Path) -> dict[str, Review]:
    """The current review of each photo: its latest review, whole photo or tile."""
    return {r.sha256: r for r in read_history(path)}


def review_counts(states: Iterable[str | None]) -> dict[str, int]:
    """``reviewed`` and one count per verdict of the current reviews ``states``."""
    counts = Counter(s for s in states if isinstance(s, str) and s)
    return {"reviewed": sum(counts.values()), **{v: counts.get(v, 0) for v in VERDICTS}}


def summary_text(counts: Mapping[str, int]) -> str:
    """ "12 reviewed: 7 confirmed, 3 false alarm(s), 1 missed, 1 unsure" (empty when 0)."""
    if not counts.get("reviewed"):
        return ""
    return (
        f"{counts['reviewed']} reviewed: {counts.get(CONFIRMED, 0)} confirmed, "
        f"{counts.get(FALSE_ALARM, 0)} false alarm(s), {counts.get(MISSED, 0)} missed, "
        f"{counts.get(UNSURE, 0)} unsure"
    )


# ------------------------------------------------------------------ effect on the map


def effective_flag(model_flagged: bool, verdict: str | None) -> bool:
    """Whether a photo counts as flagged once its current review is applied."""
    if verdict in POSITIVE_VERDICTS:
        return True
    if verdict == FALSE_ALARM:
        return False
    return bool(model_flagged)


def apply_reviews(obs: Any, reviews: Mapping[str, Review]) -> Any:
    """The observations (a DataFrame with ``sha256``, ``flagged``, ``p_final``) as the
    reviews see them: ``flagged`` and ``p_final`` changed by each photo's current review
    (module docstring), a column ``review`` (the current verdict or None) added.
    Returns a copy; the model's values stay in the GeoPackage."""
    import pandas as pd

    out = obs.copy()
    verdicts = [reviews[s].verdict if s in reviews else None for s in out["sha256"]]
    out["review"] = verdicts
    flags = out["flagged"].fillna(False).astype(bool).tolist()
    effective = [effective_flag(f, v) for f, v in zip(flags, verdicts, strict=True)]
    # bool also without rows: an empty list makes a float column, and a survey with no
    # observation yet (a cancel before the first photo) then broke ``obs[obs["flagged"]]``
    out["flagged"] = pd.Series(effective, index=out.index, dtype=bool)
    certain = [v in POSITIVE_VERDICTS for v in verdicts]
    if any(certain):
        p = out["p_final"].astype("float64").to_numpy().copy()
        p[certain] = CERTAIN
        out["p_final"] = p
    return out


# ------------------------------------------------------------------ writing


def ensure_reviews_table(path: str | Path) -> None:
    """Create the (empty) ``reviews`` table and its append-only triggers when missing."""
    path = Path(path)
    append_batch(path, reviews_schema(), [])
    con = sqlite3.connect(path)
    try:
        with con:
            for trigger in _TRIGGERS:
                con.execute(trigger)
    finally:
        con.close()


def _observation(path: Path, sha256: str) -> dict[str, Any]:
    con = connect_ro(path)
    try:
        con.row_factory = sqlite3.Row
        row = con.execute(
            "SELECT path, flagged, decision, p_final, model_id, model_version "
            f'FROM "{OBSERVATIONS}" WHERE sha256 = ?',
            (sha256,),
        ).fetchone()
    finally:
        con.close()
    if row is None:
        raise DataError(
            f"no photo with sha256 {sha256} in the observations of {path}; review a photo of "
            "this survey (see 'heritage reviews' or the observations layer)"
        )
    return dict(row)


def record_review(
    survey: str | Path,
    sha256: str,
    verdict: str,
    *,
    reviewer: str,
    defect_type: str | None = None,
    note: str | None = None,
    box: Box | None = None,
    at: str | None = None,
) -> Review:
    """Append one review of a classified photo to the survey's ``reviews`` table.

    Holds the survey's single-writer lock (:func:`heritage.io.surveyfile.open_survey`) for
    the write: :class:`~heritage.io.surveyfile.SurveyBusyError` while ``classify`` or
    ``group`` writes the same file. The photo must be in ``observations``; ``missed``
    is for a photo the model did not flag and ``false_alarm`` for one it flagged (a
    whole-photo review; a tile review may be either). Returns the row written.
    """
    from heritage.io.surveyfile import open_survey

    check_verdict(verdict, defect_type)
    reviewer = (reviewer or "").strip()
    if not reviewer:
        raise ValueError("give the reviewer's name (--reviewer NAME)")
    with open_survey(survey, {OBSERVATIONS: ("sha256", "flagged")}) as path:
        obs = _observation(path, sha256)
        flagged = bool(obs["flagged"])
        if box is None and verdict == MISSED and flagged:
            raise DataError(
                "the model flagged this photo: record 'confirmed' for a defect it found, "
                "'missed' is for a photo it did not flag"
            )
        if box is None and verdict == FALSE_ALARM and not flagged:
            raise DataError(
                "the model did not flag this photo, so it raised no alarm: record "
                "'missed' if it shows a defect"
            )
        earlier = [r for r in read_history(path, sha256) if r.box == box]
        review = Review(
            sha256=sha256,
            verdict=verdict,
            reviewer=reviewer,
            reviewed_at=at or now_utc(),
            defect_type=defect_type,
            note=(note or "").strip() or None,
            box=box,
            previous_verdict=earlier[-1].verdict if earlier else None,
            photo_path=obs["path"],
            model_id=obs["model_id"],
            model_version=obs["model_version"],
            model_decision=obs["decision"],
            p_final=obs["p_final"],
        )
        ensure_reviews_table(path)
        row = {k: v for k, v in review.as_dict().items() if k in {f.name for f in REVIEW_FIELDS}}
        if box is not None:
            row.update(box_left=box[0], box_top=box[1], box_right=box[2], box_bottom=box[3])
        append_batch(path, reviews_schema(), [row])
    logger.info("review of %s: %s by %s", sha256[:12], verdict, reviewer)
    return review


__all__ = [
    "CONFIRMED",
    "DEFECT_TYPES",
    "FALSE_ALARM",
    "MISSED",
    "REVIEWS_LAYER",
    "UNSURE",
    "VERDICTS",
    "Review",
    "apply_reviews",
    "current_by_key",
    "current_reviews",
    "effective_flag",
    "read_history",
    "record_review",
    "review_counts",
    "reviews_schema",
]
