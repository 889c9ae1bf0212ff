"""What an inspection report shows, read from a survey GeoPackage (no drawing here).

:func:`read_report_data` turns a GeoPackage written by ``heritage classify`` into plain
dataclasses: the survey summary (photos, flagged, not assessable, reviewed, models,
dates) and the flagged buildings in visiting order, each with its priority, the terms
behind the score (:mod:`heritage.survey.priority`), the leg of the route that reaches it and
its photos (flagged first) with their image paths, capture time, heading and review.

Optional parts are read when the GeoPackage has them and left out otherwise:

* the decision ``not_assessable`` of photos that show no wall (scene mode; counted);
* a ``reviews`` table (one row per review, keyed by the photo's ``sha256``): the
  latest review of each photo is its review state; columns are matched by name
  (:data:`REVIEW_COLUMNS`), so that a history table with more columns works as is;
* the box of the strongest finding in the photo (:data:`BOX_COLUMNS`), outlined on
  the report's images, and the photo's tile counts (scene and tiled modes).

Rendering lives in :mod:`heritage.survey.report_render`; images in
:mod:`heritage.survey.report_images`.
"""

from __future__ import annotations

import logging
import math
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from heritage.io.gpkg import list_layers, read_rows
from heritage.kernel.errors import DataError, InputNotFoundError
from heritage.survey.priority import (
    CATEGORY_DESCRIPTIONS,
    CATEGORY_LABELS,
    DEFAULT_CONFIG,
    PriorityConfig,
    category_rank,
)

logger = logging.getLogger(__name__)

OBSERVATIONS = "observations"
BUILDINGS = "flagged_buildings"
ROUTE = "inspection_route"
INVALID = "invalid_photos"
REVIEWS = "reviews"
#: ``decision`` (scene mode; ``status`` in no version so far, also accepted) of a photo
#: without a wall in view
NOT_ASSESSABLE = "not_assessable"
STATUS_NO_LOCATION = "no_location"

#: observation columns the report reads when present (older surveys lack some)
OBSERVATION_COLUMNS = (
    "sha256",
    "file_name",
    "latitude",
    "longitude",
    "heading",
    "taken_at",
    "width",
    "height",
    "flagged",
    "decision",
    "status",
    "message",
    "p_final",
    "defect_area_fraction",
    "priority_score",
    "priority_category",
    "building_id",
    "n_flagged_on_building",
    "visit_order",
    "model_id",
    "model_version",
    "inference_mode",
    "n_tiles",
    "n_wall_tiles",
    "n_flagged_tiles",
    "thumbnail_path",
    "overlay_path",
    "heatmap_path",
    "classified_at",
)
#: review fields -> accepted column names in a ``reviews`` table, first match wins
REVIEW_COLUMNS: dict[str, tuple[str, ...]] = {
    "state": ("verdict", "review", "review_state", "state", "decision", "label"),
    "reviewer": ("reviewer", "reviewed_by", "user", "author"),
    "at": ("reviewed_at", "created_at", "updated_at", "time", "timestamp"),
    "note": ("note", "comment", "notes"),
    "defect_type": ("defect_type", "type", "defect"),
}
#: strongest-finding box in original photo pixels: (x0, y0, x1, y1) column names
BOX_COLUMNS: tuple[tuple[str, str, str, str], ...] = (
    ("best_box_left", "best_box_top", "best_box_right", "best_box_bottom"),
    ("box_x0", "box_y0", "box_x1", "box_y1"),
    ("strongest_x0", "strongest_y0", "strongest_x1", "strongest_y1"),
    ("strongest_box_x0", "strongest_box_y0", "strongest_box_x1", "strongest_box_y1"),
)
#: or one text column holding ``"x0,y0,x1,y1"``
BOX_TEXT_COLUMNS = ("strongest_box", "strongest_tile_box", "box")


@dataclass(frozen=True, slots=True)
class Review:
    """The latest review of one photo."""

    state: str
    reviewer: str | None = None
    at: str | None = None
    note: str | None = None
    defect_type: str | None = None


@dataclass(frozen=True, slots=True)
class ReportPhoto:
    """One photo of a building as the report shows it (paths relative to the survey)."""

    fid: int
    file_name: str
    sha256: str
    flagged: bool
    status: str
    decision: str | None
    p_final: float | None
    area_fraction: float | None
    priority_score: float | None
    priority_category: str
    taken_at: str | None
    heading: float | None
    latitude: float | None
    longitude: float | None
    thumbnail_path: str | None
    overlay_path: str | None
    inference_mode: str | None
    photo_size: tuple[int, int] | None = None
    box: tuple[float, float, float, float] | None = None
    review: Review | None = None
    n_tiles: int | None = None
    n_wall_tiles: int | None = None
    n_flagged_tiles: int | None = None

    @property
    def not_assessable(self) -> bool:
        """No wall in view (scene mode's gate): the model could not judge the photo."""
        return NOT_ASSESSABLE in (self.decision, self.status)

    @property
    def heading_text(self) -> str:
        """``"200° (SSW)"``, or ``""`` without a heading."""
        if self.heading is None:
            return ""
        points = ("N", "NNE", "NE", "ENE", "E", "ESE", "SE", "SSE")
        points += ("S", "SSW", "SW", "WSW", "W", "WNW", "NW", "NNW")
        h = self.heading % 360.0
        return f"{h:.0f}° ({points[round(h / 22.5) % 16]})"


@dataclass(frozen=True, slots=True)
class PriorityTerms:
    """The inputs and terms of one priority score (the building's strongest photo).

    ``score = 100 * k * m`` with the certainty ``k = c + (1 - c) * gain * b`` and the
    extent factor ``m = base + (1 - base) * a`` (:mod:`heritage.survey.priority`). ``k`` is
    read from the stored score (and ``c`` from ``k``), so the terms always give the
    score shown; ``p``, ``f`` and ``n`` are the inputs.
    """

    p: float
    c: float
    f: float
    a: float
    n: int
    b: float
    k: float
    m: float
    gain: float
    base: float


@dataclass(frozen=True, slots=True)
class ReportBuilding:
    """One flagged building, a stop of the inspection round."""

    visit_order: int
    building_id: int
    category: str
    score: float
    source: str
    n_photos: int
    n_flagged: int
    longitude: float | None
    latitude: float | None
    leg_m: float | None
    cumulative_m: float | None
    terms: PriorityTerms | None
    photos: tuple[ReportPhoto, ...]

    @property
    def label(self) -> str:
        """The category's short label."""
        return CATEGORY_LABELS.get(self.category, self.category)

    @property
    def description(self) -> str:
        """What the category means and what to do."""
        return CATEGORY_DESCRIPTIONS.get(self.category, "")

    @property
    def review_summary(self) -> str:
        """``"confirmed 1, false_alarm 1"`` over the building's photos, ``""`` if none."""
        states = Counter(p.review.state for p in self.photos if p.review is not None)
        return ", ".join(f"{s} {n}" for s, n in sorted(states.items()))


@dataclass(frozen=True)
class ReportSummary:
    """The survey in figures."""

    survey: str
    generated_at: str
    n_photos: int
    n_flagged: int
    n_no_location: int
    n_skipped: int
    n_not_assessable: int | None
    n_buildings: int
    route_m: float
    models: tuple[str, ...]
    inference_modes: tuple[str, ...]
    classified: tuple[str, str] | None
    taken: tuple[str, str] | None
    building_categories: dict[str, int] = field(default_factory=dict)
    reviews: dict[str, int] | None = None
    grouped: bool = True
    n_flagged_unplaced: int = 0

    @property
    def n_reviewed(self) -> int:
        """Photos with at least one review."""
        return sum((self.reviews or {}).values())


@dataclass(frozen=True)
class ReportData:
    """Everything a report shows; buildings in visiting order."""

    survey: Path
    summary: ReportSummary
    buildings: tuple[ReportBuilding, ...]

    @property
    def n_report_photos(self) -> int:
        """Photos shown in the building sections."""
        return sum(len(b.photos) for b in self.buildings)


# ------------------------------------------------------------------ reading


def _connect_ro(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path.as_posix()}?mode=ro", uri=True)


def _columns(path: Path, table: str) -> list[str]:
    con = _connect_ro(path)
    try:
        return [str(r[1]) for r in con.execute(f'PRAGMA table_info("{table}")')]
    finally:
        con.close()


def _float(value: Any) -> float | None:
    if value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def _int(value: Any) -> int | None:
    v = _float(value)
    return None if v is None else int(v)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    s = str(value).strip()
    return s or None


def _box(row: dict[str, Any], cols: set[str]) -> tuple[float, float, float, float] | None:
    for names in BOX_COLUMNS:
        if set(names) <= cols:
            vals = [_float(row.get(n)) for n in names]
            if all(v is not None for v in vals):
                x0, y0, x1, y1 = vals  # type: ignore[misc]
                return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None
    for name in BOX_TEXT_COLUMNS:
        text = _text(row.get(name)) if name in cols else None
        if text:
            try:
                x0, y0, x1, y1 = (float(v) for v in text.strip("[]()").split(","))
            except ValueError:
                continue
            return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None
    return None


def read_reviews(path: Path) -> dict[str, Review]:
    """The latest review of each photo (by sha256) in the ``reviews`` table; {} without one.

    The latest is the row with the greatest review time when the table has a time
    column (:data:`REVIEW_COLUMNS`), else the last row written. A table without a
    ``sha256`` column or a state column is ignored with a warning.
    """
    if REVIEWS not in list_layers(path):
        return {}
    cols = _columns(path, REVIEWS)
    pick = {k: next((c for c in names if c in cols), None) for k, names in REVIEW_COLUMNS.items()}
    if "sha256" not in cols or pick["state"] is None:
        logger.warning("table %s of %s has no sha256 or review state column", REVIEWS, path)
        return {}
    wanted = [c for c in pick.values() if c]
    order = f'"{pick["at"]}", rowid' if pick["at"] else "rowid"
    sql = f'SELECT sha256, {", ".join(f"{chr(34)}{c}{chr(34)}" for c in wanted)} FROM "{REVIEWS}"'
    con = _connect_ro(path)
    try:
        rows = con.execute(f"{sql} ORDER BY {order}").fetchall()
    finally:
        con.close()
    out: dict[str, Review] = {}
    for sha, *values in rows:
        got = dict(zip(wanted, values, strict=True))
        state = _text(got.get(pick["state"]))
        if not sha or not state:
            continue
        out[str(sha)] = Review(  # later rows replace earlier ones
            state=state,
            reviewer=_text(got.get(pick["reviewer"])) if pick["reviewer"] else None,
            at=_text(got.get(pick["at"])) if pick["at"] else None,
            note=_text(got.get(pick["note"])) if pick["note"] else None,
            defect_type=_text(got.get(pick["defect_type"])) if pick["defect_type"] else None,
        )
    return out


def _photo(row: dict[str, Any], cols: set[str], reviews: dict[str, Review]) -> ReportPhoto:
    w, h = _int(row.get("width")), _int(row.get("height"))
    sha = str(row.get("sha256") or "")
    return ReportPhoto(
        fid=int(row["fid"]),
        file_name=str(row.get("file_name") or ""),
        sha256=sha,
        flagged=bool(row.get("flagged")),
        status=str(row.get("status") or ""),
        decision=_text(row.get("decision")),
        p_final=_float(row.get("p_final")),
        area_fraction=_float(row.get("defect_area_fraction")),
        priority_score=_float(row.get("priority_score")),
        priority_category=str(row.get("priority_category") or "none"),
        taken_at=_text(row.get("taken_at")),
        heading=_float(row.get("heading")),
        latitude=_float(row.get("latitude")),
        longitude=_float(row.get("longitude")),
        thumbnail_path=_text(row.get("thumbnail_path")),
        overlay_path=_text(row.get("overlay_path")),
        inference_mode=_text(row.get("inference_mode")),
        photo_size=(w, h) if w and h else None,
        box=_box(row, cols),
        review=reviews.get(sha),
        n_tiles=_int(row.get("n_tiles")),
        n_wall_tiles=_int(row.get("n_wall_tiles")),
        n_flagged_tiles=_int(row.get("n_flagged_tiles")),
    )


def priority_terms(
    photo: ReportPhoto, n: int, cfg: PriorityConfig = DEFAULT_CONFIG
) -> PriorityTerms:
    """The terms of ``photo``'s stored priority score (``n`` flagged photos on its building)."""
    import numpy as np

    p = photo.p_final if photo.p_final is not None else 0.0
    f = photo.area_fraction if photo.area_fraction is not None else 0.0
    a = float(np.clip(f / cfg.area_full, 0.0, 1.0))
    b = float(1.0 - math.exp(-max(n - 1, 0) / cfg.building_scale))
    m = cfg.extent_base + (1.0 - cfg.extent_base) * a
    score = photo.priority_score or 0.0
    k = float(np.clip(score / 100.0 / m, 0.0, 1.0)) if m > 0 else 0.0
    boost = cfg.corroboration_gain * b
    c = (k - boost) / (1.0 - boost) if boost < 1.0 else k
    return PriorityTerms(
        p=p,
        c=float(np.clip(c, 0.0, 1.0)),
        f=f,
        a=a,
        n=n,
        b=b,
        k=k,
        m=m,
        gain=cfg.corroboration_gain,
        base=cfg.extent_base,
    )


def _photo_key(p: ReportPhoto) -> tuple:
    # flagged first, most urgent first, then by score, then by capture time and name
    return (
        not p.flagged,
        category_rank(p.priority_category) if p.priority_category in CATEGORY_LABELS else 9,
        -(p.priority_score or 0.0),
        p.taken_at or "",
        p.file_name,
    )


def _legs(path: Path) -> dict[str, tuple[float, float]]:
    """building id (text) -> (leg_m, cumulative_m) of the leg that reaches it."""
    rows = read_rows(path, ROUTE, ["to_id", "leg_m", "cumulative_m"])
    out = {}
    for r in rows:
        leg, cum = _float(r.get("leg_m")), _float(r.get("cumulative_m"))
        if r.get("to_id") is not None and leg is not None and cum is not None:
            out[str(r["to_id"])] = (leg, cum)
    return out


def _span(values: list[str | None]) -> tuple[str, str] | None:
    vals = sorted(v for v in values if v)
    return (vals[0], vals[-1]) if vals else None


def read_report_data(survey: str | Path, generated_at: str | None = None) -> ReportData:
    """Read ``survey`` (a GeoPackage written by ``heritage classify``) for a report.

    Raises :class:`InputNotFoundError` for a missing file and :class:`DataError` for a
    GeoPackage without the ``observations`` layer (not a classified survey). A survey
    without flagged buildings gives a report without building sections.
    """
    import pyogrio

    survey = Path(survey)
    if not survey.is_file():
        raise InputNotFoundError(f"survey GeoPackage not found: {survey}")
    try:
        layers = list_layers(survey)
    except Exception as exc:
        raise DataError(f"{survey} is not a readable GeoPackage ({exc})") from exc
    if OBSERVATIONS not in layers:
        raise DataError(
            f"{survey} has no '{OBSERVATIONS}' layer: run 'heritage classify' on the photos first"
        )
    have = set(pyogrio.read_info(str(survey), layer=OBSERVATIONS)["fields"])
    box_cols = {c for names in BOX_COLUMNS for c in names} | set(BOX_TEXT_COLUMNS)
    wanted = [c for c in (*OBSERVATION_COLUMNS, *sorted(box_cols)) if c in have]
    raw = pyogrio.read_dataframe(
        str(survey), layer=OBSERVATIONS, columns=wanted, read_geometry=False, fid_as_index=True
    )
    rows = [
        {"fid": fid, **{k: (None if v != v else v) for k, v in rec.items()}}  # NaN -> None
        for fid, rec in zip(raw.index, raw.to_dict("records"), strict=True)
    ]
    reviews = read_reviews(survey)
    photos = [_photo(r, have, reviews) for r in rows]

    by_building: dict[int, list[ReportPhoto]] = {}
    n_on: dict[int, int] = {}
    unplaced = 0
    for row, photo in zip(rows, photos, strict=True):
        bid = _int(row.get("building_id"))
        if bid is not None:
            by_building.setdefault(bid, []).append(photo)
            n_on[photo.fid] = _int(row.get("n_flagged_on_building")) or 0
        elif photo.flagged:
            unplaced += 1

    buildings: list[ReportBuilding] = []
    legs = _legs(survey)
    if BUILDINGS in layers:
        bdf = pyogrio.read_dataframe(str(survey), layer=BUILDINGS)
        records = bdf.drop(columns="geometry").to_dict("records")
        for rec, geom in zip(records, bdf.geometry, strict=True):
            bid = int(rec["building_id"])
            members = sorted(by_building.get(bid, []), key=_photo_key)
            flagged = [p for p in members if p.flagged]
            top = flagged[0] if flagged else None
            point = geom.representative_point() if geom is not None and not geom.is_empty else None
            leg = legs.get(str(bid))
            visit = _int(rec.get("visit_order"))
            buildings.append(
                ReportBuilding(
                    visit_order=visit if visit is not None else 0,
                    building_id=bid,
                    category=str(rec.get("priority_category") or "none"),
                    score=_float(rec.get("priority_score")) or 0.0,
                    source=str(rec.get("source") or ""),
                    n_photos=_int(rec.get("n_photos")) or len(members),
                    n_flagged=_int(rec.get("n_flagged")) or len(flagged),
                    longitude=float(point.x) if point is not None else None,
                    latitude=float(point.y) if point is not None else None,
                    leg_m=leg[0] if leg else None,
                    cumulative_m=leg[1] if leg else None,
                    terms=priority_terms(top, n_on.get(top.fid, len(flagged))) if top else None,
                    photos=tuple(members),
                )
            )
    buildings.sort(key=lambda b: (b.visit_order <= 0, b.visit_order, b.building_id))

    statuses = Counter(p.status for p in photos)
    n_unjudged = sum(p.not_assessable for p in photos)
    modes = sorted({p.inference_mode for p in photos if p.inference_mode})
    models = sorted(
        {f"{r.get('model_id')} {r.get('model_version')}".strip() for r in rows if r.get("model_id")}
    )
    route_m = max((c for _, c in legs.values()), default=0.0)
    review_states = Counter(p.review.state for p in photos if p.review is not None)
    summary = ReportSummary(
        survey=survey.name,
        generated_at=generated_at or datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        n_photos=len(photos),
        n_flagged=sum(p.flagged for p in photos),
        n_no_location=statuses.get(STATUS_NO_LOCATION, 0),
        n_skipped=int(pyogrio.read_info(str(survey), layer=INVALID)["features"])
        if INVALID in layers
        else 0,
        n_not_assessable=n_unjudged if n_unjudged or "scene" in modes else None,
        n_buildings=len(buildings),
        route_m=float(route_m),
        models=tuple(models),
        inference_modes=tuple(modes),
        classified=_span([_text(r.get("classified_at")) for r in rows]),
        taken=_span([p.taken_at for p in photos]),
        building_categories=dict(Counter(b.category for b in buildings)),
        reviews=dict(review_states) if REVIEWS in layers else None,
        grouped=BUILDINGS in layers,
        n_flagged_unplaced=unplaced,
    )
    return ReportData(survey=survey, summary=summary, buildings=tuple(buildings))


# ------------------------------------------------------------------ the table (CSV)

#: columns of the buildings table (HTML summary table and CSV), in order
TABLE_COLUMNS = (
    "visit_order",
    "building_id",
    "priority_category",
    "priority_label",
    "priority_score",
    "confidence_p",
    "confidence_term",
    "extent_f",
    "extent_term",
    "n_flagged",
    "corroboration_term",
    "n_photos",
    "longitude",
    "latitude",
    "leg_m",
    "cumulative_m",
    "reviews",
    "flagged_photos",
)


def table_rows(data: ReportData) -> list[dict[str, Any]]:
    """One row per building in visiting order, columns :data:`TABLE_COLUMNS`."""

    def r(v: float | None, nd: int) -> float | None:
        return None if v is None else round(v, nd)

    out = []
    for b in data.buildings:
        t = b.terms
        out.append(
            {
                "visit_order": b.visit_order,
                "building_id": b.building_id,
                "priority_category": b.category,
                "priority_label": b.label,
                "priority_score": r(b.score, 1),
                "confidence_p": r(t.p, 3) if t else None,
                "confidence_term": r(t.c, 3) if t else None,
                "extent_f": r(t.f, 3) if t else None,
                "extent_term": r(t.a, 3) if t else None,
                "n_flagged": b.n_flagged,
                "corroboration_term": r(t.b, 3) if t else None,
                "n_photos": b.n_photos,
                "longitude": r(b.longitude, 6),
                "latitude": r(b.latitude, 6),
                "leg_m": r(b.leg_m, 0),
                "cumulative_m": r(b.cumulative_m, 0),
                "reviews": b.review_summary,
                "flagged_photos": ";".join(p.file_name for p in b.photos if p.flagged),
            }
        )
    return out


def csv_text(data: ReportData) -> str:
    """The buildings table as CSV (comma-separated, header line, UTF-8 text)."""
    import csv
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(TABLE_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in table_rows(data):
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return buf.getvalue()
