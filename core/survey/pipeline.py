"""The survey pipeline behind ``heritage classify``: photos -> prioritised GeoPackage.

Steps of :func:`run_survey`:

1. **Check before working**: the photo folders exist, the output is a writable
   GeoPackage, and the model loads (sha256-verified); a missing or corrupt model is a
   :class:`~heritage.kernel.errors.ModelError` before any file is read.
2. **Scan and classify** the photos found by :func:`heritage.survey.scan.scan_photo_files`
   (output folders such as ``<stem>_overlays/`` are never read; folders not read are
   rows of ``invalid_photos``), in sorted order, ``batch_size`` at a time. Each file is
   hashed (sha256) and inspected like ``heritage photos`` (same skip reasons). Photos
   without a usable position (``no_gps``, ``zero_coordinates``, ``corrupt_exif``) are
   still classified and kept with a null geometry and status ``no_location`` (the reason
   is in ``message``). Files that cannot be classified (unreadable, unsupported format,
   duplicate content, or a model failure: reason ``classification_failed``) are rows of
   the table ``invalid_photos``; one bad file never stops the batch.
   For each photo the Grad-CAM overlay (JPEG), the heat map (PNG) and a thumbnail (JPEG,
   at most ``thumbnail_px`` px, EXIF orientation applied) are written to
   ``<stem>_overlays/`` beside the GeoPackage, named after the photo's sha256, and
   referenced by paths relative to the GeoPackage's folder.

   * Whole-image mode: the model's pre-processing (shorter side resized to the input
     size, centre square crop). **The overlay and the heat map cover that centre crop
     only**, at the model's input size. Large JPEGs are decoded with Pillow's draft
     mode (DCT scaling) to about the size needed (model input, thumbnail).
   * Tiled mode (``tiles=True``, :mod:`heritage.model.tiling`): full-resolution overlapping
     windows; the heat map is stitched at the photo's full size (the defect area
     fraction is measured on it) and the overlay and the heat map cover the whole
     photo, at full size up to ``overlay_max_px`` (default 2048) on the longer side.

3. **Write observations** in batches: each batch is one SQLite transaction, so a
   crash or kill keeps every earlier batch (a consistent prefix of the photos in
   sorted order). With ``decode_workers`` > 0 the next batch is decoded by threads
   while the model works, and one writer thread commits a batch while the next is
   classified (at most one write in flight); with ``scheduler``/``workers`` the
   batches are classified on Dask workers (:mod:`heritage.survey.distributed`) and written
   here in the same order. A re-run adds only photos whose sha256 is not yet in
   ``observations`` (files already listed in ``invalid_photos`` are not listed twice).
4. **Prioritise** (:func:`update_priority`) once all photos are in: grouping by
   building (footprints or DBSCAN clusters, :func:`heritage.survey.buildings.flagged_buildings`)
   and the priority score (:mod:`heritage.survey.priority`) over *all* observations of the
   GeoPackage (earlier runs too), written back with one UPDATE transaction
   (by fid); then the layers ``flagged_buildings`` (polygons with ``visit_order``) and
   ``inspection_route`` (one LineString per leg with ``order`` and ``cumulative_m``)
   are rewritten. Without a start the route begins at the highest-priority building.
5. **Styles**: default QGIS styles in the ``layer_styles`` table (:mod:`heritage.io.styles`).

Cancelling through ``progress`` (Ctrl-C/SIGTERM in the CLI) stops after the batch
being classified: its rows are written, photos only queued are left for a re-run,
and buildings, priority and route are still computed over every classified photo;
the summary says ``cancelled``.

Heavy libraries are imported inside the functions.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from heritage.io.filenames import name_problem, name_text
from heritage.io.gpkg import BatchWriter, Field, LayerSchema, read_rows
from heritage.io.gpkg import connect_gpkg as connect_gpkg  # re-exported: it used to live here
from heritage.io.surveyfile import open_survey
from heritage.kernel.errors import CancelledError, DataError, InputNotFoundError
from heritage.kernel.progress import NullProgress, Progress
from heritage.kernel.records import Photo, SkippedFile, SkipReason
from heritage.survey.classify import (
    DECISION_NOT_ASSESSABLE,
    Answer,
    BatchExecutor,
    ClassifyConfig,
    LocalExecutor,
    make_classifier,
    scene_classifier,
)
from heritage.survey.photos import (
    INVALID_LAYER,
    PHOTO_FIELDS,
    inspect_photo_keeping_unlocated,
    invalid_schema,
    relative_path,
    sha256_file,
    skipped_row,
)
from heritage.survey.scan import mark_output_folder, scan_photo_files
from heritage.survey.sites import SITE_GAP_M

#: stage names of the progress events (the QGIS plugin maps them to one percentage)
STAGE_MODEL = "Loading the model"
STAGE_CLASSIFY = "Classifying photos"
STAGE_GROUP = "Grouping photos per building"
STAGE_ROUTE = "Planning the inspection route"
STAGE_WRITE = "Writing buildings and route"

if TYPE_CHECKING:
    import geopandas as gpd

    from heritage.model.card import LoadedModel
    from heritage.model.predict import TwoStageClassifier

logger = logging.getLogger(__name__)

OBSERVATIONS_LAYER = "observations"
BUILDINGS_LAYER = "flagged_buildings"
ROUTE_LAYER = "inspection_route"
STATUS_OK = "ok"
STATUS_NO_LOCATION = "no_location"
#: inspect_photo reasons that still allow classification (the photo has no position)
NO_LOCATION_REASONS = frozenset(
    {SkipReason.NO_GPS, SkipReason.ZERO_COORDINATES, SkipReason.CORRUPT_EXIF}
)
#: BLOB columns added with ``embed_overlays`` -> the path column they copy
BLOB_COLUMNS = {
    "overlay_jpg": "overlay_path",
    "heatmap_png": "heatmap_path",
    "thumbnail_jpg": "thumbnail_path",
}

OBSERVATION_FIELDS: tuple[Field, ...] = (
    *PHOTO_FIELDS,
    Field("stage1_label"),
    Field("stage1_score", "float"),
    Field("p_stage1", "float"),
    Field("p_stage2", "float"),
    Field("p_final", "float"),
    Field("flagged", "bool"),
    Field("decision"),
    Field("cam_method"),
    Field("cam_layer"),
    Field("cam_empty", "bool"),
    Field("defect_area_fraction", "float"),
    Field("priority_score", "float"),
    Field("priority_category"),
    Field("building_id", "int"),
    Field("n_flagged_on_building", "int"),
    Field("visit_order", "int"),
    Field("model_id"),
    Field("model_version"),
    Field("inference_mode"),
    Field("n_tiles", "int"),
    Field("overlay_path"),
    Field("heatmap_path"),
    Field("thumbnail_path"),
    Field("status"),
    Field("message"),
    Field("classified_at"),
    # added with scene mode (0.6.0), last: an older layer gets them appended in this order
    Field("n_wall_tiles", "int"),
    Field("n_flagged_tiles", "int"),
    Field("best_box_left", "int"),
    Field("best_box_top", "int"),
    Field("best_box_right", "int"),
    Field("best_box_bottom", "int"),
    # added with reviews: the photo's current review (heritage.io.reviews), rewritten by
    # update_priority from the reviews table, never by the model
    Field("review"),
    # the model's decision threshold the photo was classified with: its priority's zero
    Field("threshold", "float"),
)
#: columns added with scene mode (model 0.6.0): older surveys get them on the next run
SCENE_FIELDS = (
    "n_wall_tiles",
    "n_flagged_tiles",
    "best_box_left",
    "best_box_top",
    "best_box_right",
    "best_box_bottom",
)
#: columns added after 0.6.0: older surveys get them on the next run
LATER_FIELDS = (*SCENE_FIELDS, "review", "threshold")


def observations_schema(name: str = OBSERVATIONS_LAYER) -> LayerSchema:
    """The ``observations`` point layer (2D Point, EPSG:4326; altitude in a field), one
    row per photo content (a unique index on ``sha256``)."""
    return LayerSchema(
        name, OBSERVATION_FIELDS, "Point", "EPSG:4326", LATER_FIELDS, unique=("sha256",)
    )


@dataclass(frozen=True, slots=True)
class SurveySummary:
    """What one :func:`run_survey` did (counts of this run; totals of the GeoPackage)."""

    output: str
    overlays_dir: str
    model_id: str
    model_version: str
    inference_mode: str
    found: int = 0
    classified: int = 0
    no_location: int = 0
    flagged: int = 0
    not_assessable: int = 0
    already_classified: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    observations_total: int = 0
    flagged_total: int = 0
    not_assessable_total: int = 0
    buildings: int = 0
    route_m: float = 0.0
    categories: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    sites: list[dict[str, Any]] = field(default_factory=list)
    #: current reviews of the GeoPackage's photos (heritage.io.reviews.review_counts)
    reviews: dict[str, int] = field(default_factory=dict)
    #: photos classified again by this model (``reclassify``), their reviews kept
    reclassified: int = 0
    #: stopped by the user: the photos classified so far are in, with buildings and route
    cancelled: bool = False
    seconds: float = 0.0

    @property
    def skipped_total(self) -> int:
        """Files of this scan that were not classified."""
        return sum(self.skipped.values())

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {**dataclasses.asdict(self), "skipped_total": self.skipped_total}

    def lines(self) -> list[str]:
        """The summary as text lines for a terminal."""
        out = [
            f"GeoPackage: {self.output} (model {self.model_id} {self.model_version}, "
            f"{self.inference_mode} images)",
            f"found {self.found} image file(s); classified {self.classified} "
            f"({self.flagged} flagged, {self.classified - self.flagged - self.not_assessable} "
            f"not flagged, {self.not_assessable} not assessable, "
            f"{self.no_location} without position)"
            + (f", {self.already_classified} already classified" if self.already_classified else "")
            + (
                f", {self.reclassified} classified again with this model (their reviews kept)"
                if self.reclassified
                else ""
            ),
            f"skipped {self.skipped_total} file(s)"
            + (" (see table invalid_photos)" if self.skipped_total else ""),
        ]
        out += [f"  {reason}: {n}" for reason, n in sorted(self.skipped.items())]
        out.append(
            f"all runs: {self.observations_total} observation(s), {self.flagged_total} flagged, "
            f"{self.not_assessable_total} not assessable, "
            f"{self.buildings} building(s) to inspect, route {self.route_m:.0f} m"
        )
        from heritage.survey.sites import summary_line

        if summary_line(self.sites):
            out.append(summary_line(self.sites))
        if self.categories:
            cats = ", ".join(f"{k}: {v}" for k, v in sorted(self.categories.items()))
            out.append(f"priority categories of the flagged photos: {cats}")
        from heritage.io.reviews import summary_text

        if text := summary_text(self.reviews):
            out.append(f"reviews: {text} (the priorities and buildings follow them)")
        out.append(f"overlays, heat maps and thumbnails in {self.overlays_dir}")
        out += [f"warning: {p}" for p in self.problems]
        out.append(f"done in {self.seconds:.1f} s")
        return out


# ------------------------------------------------------------------ inputs


def overlays_dir_for(output: str | Path) -> Path:
    """The folder of overlays/heat maps/thumbnails beside ``output``: ``<stem>_overlays``."""
    output = Path(output)
    return output.parent / f"{output.stem}_overlays"


def inspect_for_survey(
    path: Path, sha256: str, max_pixels: int | None = None
) -> tuple[Photo | SkippedFile, str]:
    """``(Photo, "")``, ``(Photo without position, why)`` or ``(SkippedFile, "")``.

    Like :func:`heritage.survey.photos.inspect_photo`, except that a readable photo without a
    usable position is a :class:`Photo` with ``position=None`` (it is still classified).
    """
    # no trial decode here: every photo is decoded for the model right after, and a
    # failed decode is recorded as unreadable_image there (saves a decode per photo)
    result, unlocated = inspect_photo_keeping_unlocated(
        path, sha256, max_pixels=max_pixels, decode_check=False
    )
    if unlocated is None:
        return result, ""
    if unlocated.reason not in NO_LOCATION_REASONS:
        return unlocated, ""
    return result, f"{unlocated.reason}: {unlocated.message}"


def parse_start(text: str) -> tuple[float, float] | Path:
    """``"LON,LAT"`` -> ``(lon, lat)``; anything else is a path to a points file.

    An empty text is a :class:`DataError` (it would name the current folder)."""
    if not text.strip():
        raise DataError("the start is empty: give LON,LAT (e.g. 11.88,43.46) or a points file")
    parts = text.split(",")
    if len(parts) == 2:
        try:
            lon, lat = float(parts[0]), float(parts[1])
        except ValueError:
            return Path(text)
        if not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0):
            raise DataError(f"start {text!r}: give LON,LAT in degrees (lon first)")
        return (lon, lat)
    return Path(text)


def _start_point(start: tuple[float, float] | Path | None) -> tuple[float, float] | None:
    if start is None or isinstance(start, tuple):
        return start
    from heritage.io.geo import read_vector

    gdf = read_vector(start)
    if len(gdf) == 0:
        raise DataError(f"{start} holds no feature to start the route from")
    if len(gdf) > 1:
        logger.warning("%s has %d features: the route starts at the first", start, len(gdf))
    pt = gdf.geometry.iloc[0].representative_point()
    return (float(pt.x), float(pt.y))


# ------------------------------------------------------------------ per photo


def _observation_row(
    photo: Photo,
    answer: Answer,
    paths: tuple[Path, Path, Path],
    base: Path,
    card_id: tuple[str, str],
    mode: str,
    message: str,
    threshold: float | None = None,
) -> dict[str, Any]:
    from heritage.survey.photos import photo_row

    row = photo_row(photo, base)
    row.update(
        stage1_label=answer.label,
        stage1_score=answer.score,
        p_stage1=answer.p_stage1,
        p_stage2=answer.p_stage2,
        p_final=answer.p_final,
        flagged=answer.decision,
        decision=answer.decision_label,
        cam_method=answer.cam_method,
        cam_layer=answer.cam_layer,
        cam_empty=answer.cam_empty,
        defect_area_fraction=answer.area_fraction,
        priority_score=None,
        priority_category=None,
        building_id=None,
        n_flagged_on_building=None,
        visit_order=None,
        model_id=card_id[0],
        model_version=card_id[1],
        threshold=threshold,
        inference_mode=mode,
        n_tiles=answer.n_tiles,
        n_wall_tiles=answer.n_wall_tiles,
        n_flagged_tiles=answer.n_flagged_tiles,
        best_box_left=answer.best_box[0] if answer.best_box else None,
        best_box_top=answer.best_box[1] if answer.best_box else None,
        best_box_right=answer.best_box[2] if answer.best_box else None,
        best_box_bottom=answer.best_box[3] if answer.best_box else None,
        overlay_path=relative_path(paths[0], base),
        heatmap_path=relative_path(paths[1], base),
        thumbnail_path=relative_path(paths[2], base),
        status=STATUS_OK if photo.position is not None else STATUS_NO_LOCATION,
        message="; ".join(m for m in (message, name_problem(photo.path)) if m),
        classified_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    return row


def _point(photo: Photo) -> Any:
    import shapely

    pos = photo.position
    return None if pos is None else shapely.Point(pos.lon, pos.lat)


# ------------------------------------------------------------------ run


@dataclass
class _Run:
    """Mutable state of one run (counts and writers)."""

    cfg: ClassifyConfig
    out: Path
    base: Path
    folder: Path
    clf: TwoStageClassifier
    card_id: tuple[str, str]
    obs: BatchWriter
    bad: BatchWriter
    progress: Progress
    known_invalid: set[tuple[str, str | None]]
    skipped: Counter[str] = field(default_factory=Counter)
    classified: int = 0
    no_location: int = 0
    flagged: int = 0
    not_assessable: int = 0
    pending: list[tuple[Photo, str]] = field(default_factory=list)
    in_flight: deque[tuple[list[tuple[Photo, str]], Any]] = field(default_factory=deque)
    executor: BatchExecutor | None = None
    #: with an asynchronous executor, one thread writes the GeoPackage (SQLite's fsync at
    #: each commit) while the next batch is classified; batches stay in order
    write_pool: ThreadPoolExecutor | None = None
    last_write: Future | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: sha256 of observations of another model to replace (ClassifyConfig.reclassify)
    replace: set[str] = field(default_factory=set)
    reclassified: int = 0

    def skip(self, item: SkippedFile | tuple[Path, str, str, str | None]) -> str:
        if isinstance(item, SkippedFile):
            row = skipped_row(item, self.base)
        else:
            path, reason, message, sha = item
            row = {
                "path": relative_path(path, self.base),
                "file_name": name_text(path),
                "sha256": sha,
                "reason": reason,
                "message": message,
            }
        self.skipped[row["reason"]] += 1
        key = (row["path"], row["sha256"])
        if key in self.known_invalid:
            return f"{row['reason']} (already listed)"
        self.known_invalid.add(key)
        with self.lock:
            self.bad.add(row)
        return str(row["reason"])

    def process_pending(self) -> None:
        """Hand the pending photos to the executor; write the batches it has finished.

        With a synchronous executor (``depth`` 0) the batch is classified and written
        at once, one transaction per table; otherwise up to ``depth`` batches are in
        flight and are written in the order they were queued.
        """
        if not self.pending:
            return
        assert self.executor is not None
        batch, self.pending = self.pending, []
        self.in_flight.append((batch, self.executor.submit([p for p, _ in batch])))
        while len(self.in_flight) > self.executor.depth:
            self._record(*self.in_flight.popleft())

    def drain(self) -> None:
        """Write every batch still in flight, in order, and wait for the writes."""
        while self.in_flight:
            self._record(*self.in_flight.popleft())
        self.wait_writes()

    def wait_writes(self) -> None:
        """Wait for the GeoPackage write in progress (its error is raised here)."""
        if self.last_write is not None:
            done, self.last_write = self.last_write, None
            done.result()

    def close(self) -> None:
        """Stop the executor and the writer thread (after its last write)."""
        if self.executor is not None:
            self.executor.close()
        if self.write_pool is not None:
            self.write_pool.shutdown(wait=True)

    def _record(self, batch: list[tuple[Photo, str]], handle: Any) -> None:
        assert self.executor is not None
        outcomes = self.executor.result(handle)
        rows = []
        for (photo, message), outcome in zip(batch, outcomes, strict=True):
            if outcome.answer is None or outcome.paths is None:
                self.skip((Path(photo.path), outcome.reason, outcome.message, photo.sha256))
                continue
            row = _observation_row(
                photo,
                outcome.answer,
                outcome.paths,
                self.base,
                self.card_id,
                self.cfg.inference_mode,
                message,
                float(self.clf.card.threshold),
            )
            rows.append((row, _point(photo)))
            self.classified += 1
            self.no_location += photo.position is None
            self.flagged += outcome.answer.decision
            self.not_assessable += outcome.answer.decision_label == DECISION_NOT_ASSESSABLE

        def write() -> None:  # one transaction per table
            with self.lock:
                self._delete_replaced([r["sha256"] for r, _ in rows])
                self.obs.extend(rows)
                self.obs.flush()
                if self.bad.pending:
                    self.bad.flush()

        if self.write_pool is None:
            write()
        else:
            self.wait_writes()  # at most one write in flight: the file stays a prefix
            self.last_write = self.write_pool.submit(write)

    def _delete_replaced(self, shas: list[str]) -> None:
        """Delete the other model's rows of photos about to be written again (one
        transaction; a kill before the new rows are in leaves them for a re-run)."""
        old = [(s,) for s in shas if s in self.replace]
        if not old:
            return
        con = connect_gpkg(self.out)
        try:
            with con:
                con.executemany(f'DELETE FROM "{OBSERVATIONS_LAYER}" WHERE sha256 = ?', old)
        finally:
            con.close()
        self.replace.difference_update(s for (s,) in old)
        self.reclassified += len(old)


# ------------------------------------------------------------------ one batch, anywhere


def _load_classifier(
    cfg: ClassifyConfig, progress: Progress | None = None
) -> tuple[LoadedModel, TwoStageClassifier]:
    from heritage.model.card import load_model
    from heritage.model.preprocess import resolve_device

    progress = progress or NullProgress()
    device = resolve_device(cfg.device)
    loaded = load_model(cfg.model_dir, device=device)
    progress.step(1)
    clf = make_classifier(loaded, device, cfg.cam_method)
    if cfg.mode == "scene":
        scene_classifier(clf, cfg)  # settings and wall gate checked before any photo
    progress.step(1)
    return loaded, clf


def _make_executor(cfg: ClassifyConfig, clf: TwoStageClassifier, folder: Path) -> BatchExecutor:
    if cfg.scheduler or cfg.workers:
        from heritage.survey.distributed import DaskExecutor

        return DaskExecutor(cfg, folder)
    return LocalExecutor(clf, cfg, folder, cfg.decode_workers)


def run_survey(cfg: ClassifyConfig, progress: Progress | None = None) -> SurveySummary:
    """Run the whole survey pipeline (see the module docstring); returns its summary.

    Raises InputNotFoundError (missing folder), OutputNotWritableError (also
    :class:`~heritage.io.surveyfile.SurveyBusyError` while another process writes the
    same GeoPackage) and ModelError (before any photo is read). A cancel stops after
    the batch being classified and returns a summary with ``cancelled`` set (the
    buildings, priority and route computed over what was kept). The GeoPackage is
    opened through :func:`heritage.io.surveyfile.open_survey` (checks, single-writer
    lock, repair of duplicate observations, one-line errors for failed writes).
    """
    for d in cfg.photo_dirs:
        if not Path(d).expanduser().is_dir():
            what = "is not a folder" if Path(d).exists() else "does not exist"
            raise InputNotFoundError(f"photo folder {d} {what}; give a folder of photos")
    repairs: list[str] = []
    with open_survey(cfg.output, create=True, repairs=repairs) as out:
        return _run_survey(cfg, out, progress or NullProgress(), repairs)


def _run_survey(
    cfg: ClassifyConfig, out: Path, progress: Progress, repairs: list[str]
) -> SurveySummary:
    started = time.perf_counter()
    for extra in (cfg.footprints, cfg.network, cfg.start if isinstance(cfg.start, Path) else None):
        if extra is not None and not Path(extra).exists():
            raise InputNotFoundError(f"vector file not found: {extra}")
    progress.start(STAGE_MODEL, total=3)  # import torch, read the weights, prepare
    import torch  # noqa: F401 (the first import alone takes seconds: a step of its own)

    progress.step(1)
    loaded, clf = _load_classifier(cfg, progress)
    card = loaded.card
    base, folder = out.parent, overlays_dir_for(out)
    executor: BatchExecutor | None = None
    try:
        executor = _make_executor(cfg, clf, folder)  # a Dask scheduler is reached here
        mark_output_folder(folder)  # before the scan: never read back as photos
        scan = scan_photo_files(cfg.photo_dirs, exclude=[folder])
        files = scan.files
        columns = ["sha256", "path", "model_id", "model_version"]
        earlier = read_rows(out, OBSERVATIONS_LAYER, columns)
        this_model = (card.model_id, card.version)
        replace: set[str] = set()
        if cfg.reclassify:
            replace = {
                r["sha256"] for r in earlier if (r["model_id"], r["model_version"]) != this_model
            }
            earlier = [r for r in earlier if r["sha256"] not in replace]
        known_obs = {r["sha256"]: r["path"] for r in earlier}
        mixed = _other_model_warning(earlier, card.model_id, card.version)
        known_invalid = {
            (r["path"], r["sha256"]) for r in read_rows(out, INVALID_LAYER, ["path", "sha256"])
        }
        logger.info(
            "%d file(s) found; %d observation(s) already in %s", len(files), len(known_obs), out
        )
        already = 0
        cancelled = False
        with (
            BatchWriter(out, observations_schema(), cfg.batch_size) as obs_writer,
            BatchWriter(out, invalid_schema(), 10_000) as bad_writer,
        ):
            obs_writer.ensure_layer()
            bad_writer.ensure_layer()
            run = _Run(
                cfg,
                out,
                base,
                folder,
                clf,
                (card.model_id, card.version),
                obs_writer,
                bad_writer,
                progress,
                known_invalid,
            )
            run.executor = executor
            run.replace = replace
            if run.executor.depth > 0:
                run.write_pool = ThreadPoolExecutor(1, thread_name_prefix="heritage-gpkg")
            for skipped_folder in scan.skipped:
                run.skip(skipped_folder)
            seen: dict[str, str] = {}
            progress.start(STAGE_CLASSIFY, total=len(files))
            try:
                for path in files:
                    progress.check_cancelled()
                    status = _scan_one(run, path, known_obs, seen, cfg)
                    if status == "already_classified":
                        already += 1
                    if len(run.pending) >= cfg.batch_size:
                        run.process_pending()
                    progress.step(
                        1, file=relative_path(path, base), status=status, written=obs_writer.written
                    )
                run.process_pending()
                run.drain()
            except CancelledError:
                # stop after the batch being classified: batches only queued for
                # decoding here are dropped (a re-run classifies them); batches a Dask
                # worker may have done already are written
                if isinstance(run.executor, LocalExecutor):
                    run.in_flight.clear()
                run.drain()
                cancelled = True
            finally:
                run.close()
        # also after a cancel: buildings, priority and route over what was classified
        record_missing_thresholds(out, card.model_id, card.version, card.threshold)
        totals = update_priority(
            out, cfg, card.threshold, progress, f"model {card.model_id} {card.version}"
        )
        totals["problems"] = [*repairs, *([mixed] if mixed else []), *totals["problems"]]
        if cfg.embed_overlays:
            embed_overlays(out)
        from heritage.io.styles import write_default_styles

        write_default_styles(out)
    finally:
        if executor is not None:
            executor.close()
        clf.close()
    return SurveySummary(
        output=str(out),
        overlays_dir=str(folder),
        model_id=card.model_id,
        model_version=card.version,
        inference_mode=cfg.inference_mode,
        found=len(files),
        classified=run.classified,
        no_location=run.no_location,
        flagged=run.flagged,
        not_assessable=run.not_assessable,
        already_classified=already,
        reclassified=run.reclassified,
        skipped=dict(run.skipped),
        cancelled=cancelled,
        seconds=time.perf_counter() - started,
        **totals,
    )


def record_missing_thresholds(out: Path, model_id: str, version: str, threshold: float) -> int:
    """Give ``threshold`` to the observations of this very model (same id and version,
    hence the same card) that were classified before thresholds were recorded; returns
    how many. Rows of other models keep no value (their threshold is not known here)."""
    con = connect_gpkg(out)
    try:
        have = {r[1] for r in con.execute(f'PRAGMA table_info("{OBSERVATIONS_LAYER}")')}
        if "threshold" not in have:
            return 0
        with con:
            cur = con.execute(
                f'UPDATE "{OBSERVATIONS_LAYER}" SET threshold = ? WHERE threshold IS NULL '
                "AND model_id = ? AND model_version = ?",
                (float(threshold), model_id, version),
            )
        return cur.rowcount
    finally:
        con.close()


def _other_model_warning(rows: list[dict[str, Any]], model_id: str, version: str) -> str:
    """The warning when earlier observations of the GeoPackage came from another model
    (they are kept, not re-classified, and scored against their own recorded threshold,
    this model's when they have none); empty when there are none."""
    others = Counter(
        f"{r.get('model_id')} {r.get('model_version')}"
        for r in rows
        if (r.get("model_id"), r.get("model_version")) != (model_id, version)
    )
    if not others:
        return ""
    which = ", ".join(f"{n} by {m}" for m, n in sorted(others.items()))
    msg = (
        f"{sum(others.values())} earlier observation(s) in this GeoPackage were classified by "
        f"another model ({which}), not by {model_id} {version}; they were kept as they are. "
        "To classify every photo with this model, write to a new GeoPackage."
    )
    logger.warning(msg)
    return msg


def _scan_one(
    run: _Run, path: Path, known_obs: dict[str, str], seen: dict[str, str], cfg: ClassifyConfig
) -> str:
    """Hash and inspect one file: queue it, skip it, or say it is already classified."""
    rel = relative_path(path, run.base)
    try:
        size = path.stat().st_size
        sha = sha256_file(path)
    except OSError as exc:
        msg = f"cannot read the file ({exc.strerror})"
        return run.skip((path, str(SkipReason.UNREADABLE_IMAGE), msg, None))
    if size > 0:
        if sha in known_obs:
            if known_obs[sha] == rel:
                return "already_classified"
            msg = f"same content as {known_obs[sha]}, already in the GeoPackage"
            return run.skip((path, str(SkipReason.DUPLICATE), msg, sha))
        if sha in seen:
            msg = f"same content as {seen[sha]} (same sha256)"
            return run.skip((path, str(SkipReason.DUPLICATE), msg, sha))
        seen[sha] = rel
    result, why = inspect_for_survey(path, sha, cfg.max_pixels)
    if isinstance(result, SkippedFile):
        return run.skip(result)
    run.pending.append((result, why))
    return STATUS_NO_LOCATION if why else "queued"


# ------------------------------------------------------------------ prioritise


def _read_observations(out: Path) -> gpd.GeoDataFrame:
    import pyogrio

    from heritage.io.reviews import apply_reviews, current_reviews

    cols = ["file_name", "sha256", "flagged", "p_final", "defect_area_fraction"]
    have = set(pyogrio.read_info(str(out), layer=OBSERVATIONS_LAYER)["fields"])
    cols += [c for c in ("decision", "threshold") if c in have]
    gdf = pyogrio.read_dataframe(out, layer=OBSERVATIONS_LAYER, columns=cols, fid_as_index=True)
    gdf["flagged"] = gdf["flagged"].fillna(False).astype(bool)
    gdf["obs_id"] = gdf.index.astype("int64")
    # the reviewers' verdicts: false alarms no longer flagged, confirmed/missed certain
    return apply_reviews(gdf, current_reviews(out))


def _multipolygons(gdf: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    import shapely
    from shapely.geometry import MultiPolygon

    def to_multi(g: Any) -> Any:
        if g is None or g.is_empty:
            return g
        if g.geom_type == "Polygon":
            return MultiPolygon([g])
        if g.geom_type == "MultiPolygon":
            return g
        parts = [p for p in shapely.get_parts(g) if p.geom_type in {"Polygon", "MultiPolygon"}]
        polys = [q for p in parts for q in shapely.get_parts(p)]
        return MultiPolygon(polys) if polys else None

    gdf = gdf.copy()
    gdf.geometry = [to_multi(g) for g in gdf.geometry]
    return gdf


def _route(
    buildings: gpd.GeoDataFrame,
    start: tuple[float, float] | None,
    network: gpd.GeoDataFrame | None,
    by_priority: bool,
    site_gap_m: float = SITE_GAP_M,
) -> tuple[Any, gpd.GeoDataFrame, float, list[Any], list[str]]:
    """(visit order per building, legs layer, total metres, sites, problems): one
    route per site (:mod:`heritage.survey.sites`), each planned by :func:`_route_site`."""
    from heritage.survey.sites import plan_by_site

    if start is not None and len(buildings):
        from heritage.io.geo import check_start

        reps = buildings.geometry.representative_point()
        check_start(start, zip(reps.x, reps.y, strict=True))  # swapped LON,LAT is refused

    def one(part: gpd.GeoDataFrame, part_start: tuple[float, float] | None) -> tuple:
        return _route_site(part, part_start, network, by_priority)

    return plan_by_site(buildings, start, one, site_gap_m)


def _route_site(
    buildings: gpd.GeoDataFrame,
    start: tuple[float, float] | None,
    network: gpd.GeoDataFrame | None,
    by_priority: bool,
) -> tuple[Any, gpd.GeoDataFrame, float]:
    """(visit order per building, legs layer, total metres) of one site.

    Without ``start`` the route begins at the highest-priority building (highest
    score, then most urgent category, then lowest building_id); the rest of the
    route is planned from that building's representative point.
    """
    import geopandas as gpd
    import numpy as np
    import pandas as pd

    from heritage.io.geo import metric_crs_for
    from heritage.survey.priority import category_rank
    from heritage.survey.route import START, plan_route

    if start is not None or len(buildings) < 2:
        res = plan_route(buildings, start=start, by_priority=by_priority, network_gdf=network)
        return res.visit_order, res.legs, res.total_m
    ranks = [category_rank(c) for c in buildings["priority_category"]]
    key = sorted(
        range(len(buildings)),
        key=lambda i: (
            -float(buildings["priority_score"].iloc[i]),
            ranks[i],
            int(buildings["building_id"].iloc[i]),
        ),
    )
    top = key[0]
    crs = metric_crs_for(buildings)
    rep = buildings.geometry.iloc[[top]].to_crs(crs).representative_point().to_crs("EPSG:4326")
    top_xy = (float(rep.iloc[0].x), float(rep.iloc[0].y))
    rest_pos = [i for i in range(len(buildings)) if i != top]
    rest = buildings.iloc[rest_pos]
    res = plan_route(rest, start=top_xy, by_priority=by_priority, network_gdf=network)
    visit = pd.Series(pd.NA, index=buildings.index, dtype="Int64", name="visit_order")
    visit.iloc[top] = 1
    for pos, v in zip(rest_pos, res.visit_order.to_numpy(), strict=True):
        visit.iloc[pos] = int(v) + 1
    legs = res.legs.copy()
    pos_map = np.asarray(rest_pos, dtype=np.int64)
    legs["to_stop"] = pos_map[legs["to_stop"].to_numpy()]
    from_stop = legs["from_stop"].to_numpy()
    legs["from_stop"] = np.where(from_stop == START, top, pos_map[np.maximum(from_stop, 0)])
    top_id = str(buildings["building_id"].iloc[top])
    legs["from_id"] = [top_id if f == "start" else f for f in legs["from_id"]]
    return visit, gpd.GeoDataFrame(legs, geometry=legs.geometry, crs="EPSG:4326"), res.total_m


def _site_of(buildings: gpd.GeoDataFrame, sites: list[Any]) -> Any:
    """The site number of each building (from the visit ranges of the sites)."""
    import numpy as np

    visit = buildings["visit_order"].to_numpy()
    out = np.zeros(len(buildings), dtype=np.int64)
    for site in sites:
        out[(visit >= site.first_visit) & (visit <= site.last_visit)] = site.site
    return out


def _empty_legs() -> gpd.GeoDataFrame:
    """An empty ``inspection_route`` layer with every column."""
    from heritage.survey.route import LEG_COLUMNS
    from heritage.survey.sites import SITE_LEG_COLUMNS

    return _empty_layer(
        {c: "object" if c.endswith("_id") else "float64" if c.endswith("_m") else "int64"
         for c in (*LEG_COLUMNS, *SITE_LEG_COLUMNS)}
    )  # fmt: skip


def _empty_layer(columns: dict[str, str]) -> gpd.GeoDataFrame:
    import geopandas as gpd
    import pandas as pd

    data = {name: pd.Series([], dtype=dtype) for name, dtype in columns.items()}
    return gpd.GeoDataFrame(data, geometry=gpd.GeoSeries([], crs="EPSG:4326"), crs="EPSG:4326")


def update_priority(
    out: Path,
    cfg: ClassifyConfig,
    threshold: float | None = None,
    progress: Progress | None = None,
    threshold_source: str = "",
) -> dict[str, Any]:
    """Group, score and route over every observation of ``out``; rewrite the layers.

    Writes ``building_id``, ``n_flagged_on_building``, ``priority_score``,
    ``priority_category`` and ``visit_order`` of every observation in one SQLite
    transaction, then replaces the ``flagged_buildings`` and ``inspection_route``
    layers. Each photo is scored against the decision threshold recorded with it
    (``threshold`` column); ``threshold`` (that of the model ``threshold_source``
    names, e.g. ``"model heritage-default 0.7.0"``) stands in for photos classified
    before thresholds were recorded, and ``problems`` then says how many they are.
    Returns the totals of :class:`SurveySummary` (``observations_total``,
    ``flagged_total``, ``buildings``, ``route_m``, ``categories``, ``problems``).
    """
    import numpy as np
    import pandas as pd
    import pyogrio

    from heritage.io.geo import read_vector
    from heritage.io.reviews import review_counts
    from heritage.survey.buildings import BUILDING_COLUMNS, flagged_buildings

    progress = progress or NullProgress()
    progress.start(STAGE_GROUP, total=1)
    prio = cfg.priority
    if threshold is not None and 0.0 <= threshold < 1.0:
        prio = dataclasses.replace(prio, confidence_floor=float(threshold))
    else:  # the model's threshold cannot anchor a score: the note names the default floor
        threshold_source = ""
    problems: list[str] = []
    footprints = network = None
    if cfg.footprints is not None:
        footprints = read_vector(cfg.footprints)
        problems += list(footprints.attrs.get("problems", []))
    if cfg.network is not None:
        network = read_vector(cfg.network)
        problems += list(network.attrs.get("problems", []))
    start = _start_point(cfg.start)

    obs = _read_observations(out)
    if note := _fallback_note(obs, prio.confidence_floor, threshold_source):
        problems.append(note)
    if len(obs):
        grouping = flagged_buildings(
            obs,
            footprints,
            priority_cfg=prio,
            max_distance_m=cfg.max_distance_m,
            eps_m=cfg.cluster_eps_m,
        )
        problems += grouping.problems
        scored = grouping.observations
        buildings = grouping.buildings
    else:
        scored = obs.assign(
            building_id=pd.Series([], dtype="Int64"),
            n_flagged_on_building=pd.Series([], dtype="int64"),
            priority_score=pd.Series([], dtype="float64"),
            priority_category=pd.Series([], dtype="object"),
        )
        buildings = _empty_layer(
            {c: "float64" if "score" in c else "int64" for c in BUILDING_COLUMNS[:1]}
        )
    sites: list[Any] = []
    progress.step(1)
    progress.start(STAGE_ROUTE, total=1)
    if len(buildings):
        visit, legs, total_m, sites, site_problems = _route(
            buildings, start, network, cfg.by_priority, cfg.site_gap_m
        )
        problems += site_problems
        buildings = buildings.assign(visit_order=visit.astype("int64").to_numpy())
        buildings = buildings.assign(site=_site_of(buildings, sites))
    else:
        legs = _empty_legs()
        total_m = 0.0
        buildings = buildings.assign(
            visit_order=pd.Series([], dtype="int64"), site=pd.Series([], dtype="int64")
        )
    visit_of_building = dict(
        zip(buildings["building_id"].astype(int), buildings["visit_order"].astype(int), strict=True)
    )
    buildings = _with_review_counts(buildings, scored)

    updates = []
    for fid, bid, n, score, cat, review in zip(
        scored.index,
        scored["building_id"],
        scored["n_flagged_on_building"],
        scored["priority_score"],
        scored["priority_category"],
        scored["review"],
        strict=True,
    ):
        b = None if pd.isna(bid) else int(bid)
        visit = visit_of_building.get(b) if b else None
        review = review if isinstance(review, str) else None
        updates.append((b, int(n), float(score), str(cat), visit, review, int(fid)))
    progress.step(1)
    progress.start(STAGE_WRITE, total=1)
    con = connect_gpkg(out)
    with con:  # one transaction, committed on success
        have = {r[1] for r in con.execute(f'PRAGMA table_info("{OBSERVATIONS_LAYER}")')}
        if "review" not in have:  # a survey written before reviews existed
            con.execute(f'ALTER TABLE "{OBSERVATIONS_LAYER}" ADD COLUMN "review" TEXT')
        con.executemany(
            f'UPDATE "{OBSERVATIONS_LAYER}" SET building_id = ?, n_flagged_on_building = ?, '
            "priority_score = ?, priority_category = ?, visit_order = ?, review = ? "
            "WHERE fid = ?",
            updates,
        )
    con.close()

    buildings = _multipolygons(buildings)
    pyogrio.write_dataframe(
        buildings, out, layer=BUILDINGS_LAYER, driver="GPKG", geometry_type="MultiPolygon"
    )
    pyogrio.write_dataframe(legs, out, layer=ROUTE_LAYER, driver="GPKG", geometry_type="LineString")
    flagged = scored[scored["flagged"]]
    cats = Counter(str(c) for c in flagged["priority_category"])
    logger.info(
        "%d observation(s), %d flagged, %d building(s), route %.0f m",
        len(scored), len(flagged), len(buildings), total_m,
    )  # fmt: skip
    # no progress.message for the problems: the callers print them once, with the summary
    progress.step(1, buildings=len(buildings), route_m=round(float(total_m), 1))
    return {
        "observations_total": len(scored),
        "flagged_total": len(flagged),
        "not_assessable_total": int((obs["decision"] == DECISION_NOT_ASSESSABLE).sum())
        if "decision" in obs
        else 0,
        "buildings": len(buildings),
        "route_m": float(np.round(total_m, 3)),
        "categories": dict(cats),
        "problems": problems,
        "sites": [site.as_dict() for site in sites],
        "reviews": review_counts(scored["review"]),
    }


def _fallback_note(obs: gpd.GeoDataFrame, fallback: float, source: str) -> str:
    """The line saying how many observations have no recorded threshold and what they
    were scored with; empty when every observation has one."""
    from heritage.survey.buildings import has_recorded_threshold

    missing = int((~has_recorded_threshold(obs)).sum())
    if not missing:
        return ""
    what = f"{source}'s threshold" if source else "the default confidence floor"
    return (
        f"{missing} observation(s) have no recorded threshold (classified before thresholds "
        f"were recorded); scored with {what} {fallback:.3f}"
    )


def _with_review_counts(buildings: gpd.GeoDataFrame, scored: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """The buildings with ``n_reviewed`` (photos with a current review) and
    ``n_confirmed`` (photos confirmed or added as missed) among their photos."""
    import pandas as pd

    from heritage.io.reviews import POSITIVE_VERDICTS

    reviewed: Counter[int] = Counter()
    confirmed: Counter[int] = Counter()
    for bid, review in zip(scored["building_id"], scored["review"], strict=True):
        if not isinstance(review, str) or pd.isna(bid):  # no review, or on no building
            continue
        reviewed[int(bid)] += 1
        confirmed[int(bid)] += review in POSITIVE_VERDICTS
    ids = [int(b) for b in buildings["building_id"]]
    return buildings.assign(
        n_reviewed=[reviewed[b] for b in ids], n_confirmed=[confirmed[b] for b in ids]
    )


# ------------------------------------------------------------------ blobs


def embed_overlays(out: Path) -> int:
    """Copy the overlay/heat map/thumbnail files into BLOB columns of ``observations``.

    Adds the columns ``overlay_jpg``, ``heatmap_png`` and ``thumbnail_jpg`` when
    missing and fills every row where they are NULL and the file exists (so a run
    interrupted before this step is completed by the next one). One transaction.
    Returns the number of rows updated.
    """
    base = out.parent
    con = connect_gpkg(out)
    with con:
        have = {r[1] for r in con.execute(f'PRAGMA table_info("{OBSERVATIONS_LAYER}")')}
        for col in BLOB_COLUMNS:
            if col not in have:
                con.execute(f'ALTER TABLE "{OBSERVATIONS_LAYER}" ADD COLUMN "{col}" BLOB')
        cols = ", ".join(f'"{c}"' for c in BLOB_COLUMNS.values())
        where = " OR ".join(f'"{c}" IS NULL' for c in BLOB_COLUMNS)
        rows = con.execute(f'SELECT fid, {cols} FROM "{OBSERVATIONS_LAYER}" WHERE {where}')
        updates = []
        for fid, *paths in rows.fetchall():
            blobs = []
            for rel in paths:
                p = base / rel if rel else None
                blobs.append(p.read_bytes() if p is not None and p.is_file() else None)
            updates.append((*blobs, fid))
        sets = ", ".join(f'"{c}" = ?' for c in BLOB_COLUMNS)
        con.executemany(f'UPDATE "{OBSERVATIONS_LAYER}" SET {sets} WHERE fid = ?', updates)
    con.close()
    return len(updates)


__all__ = [
    "BUILDINGS_LAYER",
    "OBSERVATIONS_LAYER",
    "ROUTE_LAYER",
    "ClassifyConfig",
    "SurveySummary",
    "embed_overlays",
    "inspect_for_survey",
    "observations_schema",
    "overlays_dir_for",
    "parse_start",
    "run_survey",
    "update_priority",
]


# ------------------------------------------------------------------ regroup / reroute

#: columns of ``observations`` that ``heritage group`` reads and writes
GROUP_COLUMNS = (
    "file_name", "flagged", "p_final", "defect_area_fraction", "building_id",
    "n_flagged_on_building", "priority_score", "priority_category", "visit_order",
)  # fmt: skip
#: columns that ``heritage route`` reads and writes
ROUTE_COLUMNS = ("building_id", "visit_order")
BUILDING_ROUTE_COLUMNS = ("building_id", "priority_score", "priority_category")


def regroup_survey(
    out: str | Path,
    *,
    footprints: Path | None = None,
    max_distance_m: float = 25.0,
    cluster_eps_m: float = 30.0,
    start: tuple[float, float] | Path | None = None,
    network: Path | None = None,
    by_priority: bool = False,
    threshold: float | None = None,
    progress: Progress | None = None,
    site_gap_m: float = SITE_GAP_M,
    threshold_source: str = "",
) -> dict[str, Any]:
    """Re-group an existing survey GeoPackage per building and re-plan its route.

    The observations are not re-classified: only ``building_id``, the priority
    fields, ``flagged_buildings``, ``visit_order`` and ``inspection_route`` are
    rewritten (:func:`update_priority`). Each photo's priority is anchored to the
    decision threshold recorded with it; ``threshold`` (of the model
    ``threshold_source`` names) stands in for photos classified before thresholds
    were recorded, ``None`` for the default floor.
    """
    repairs: list[str] = []
    with open_survey(out, {OBSERVATIONS_LAYER: GROUP_COLUMNS}, repairs=repairs) as out:
        totals = update_priority(
            out,
            _regroup_config(
                out,
                footprints,
                max_distance_m,
                cluster_eps_m,
                start,
                network,
                by_priority,
                site_gap_m,
            ),
            threshold,
            progress,
            threshold_source,
        )
    totals["problems"] = [*repairs, *totals["problems"]]
    return totals


def _regroup_config(
    out: Path,
    footprints: Path | None,
    max_distance_m: float,
    cluster_eps_m: float,
    start: tuple[float, float] | Path | None,
    network: Path | None,
    by_priority: bool,
    site_gap_m: float = SITE_GAP_M,
) -> ClassifyConfig:
    return ClassifyConfig(
        photo_dirs=(out.parent,),  # not read: nothing is classified again
        output=out,
        footprints=footprints,
        max_distance_m=max_distance_m,
        cluster_eps_m=cluster_eps_m,
        start=start,
        network=network,
        by_priority=by_priority,
        site_gap_m=site_gap_m,
    )


def replan_route(
    out: str | Path,
    *,
    start: tuple[float, float] | Path | None = None,
    network: Path | None = None,
    by_priority: bool = False,
    progress: Progress | None = None,
    site_gap_m: float = SITE_GAP_M,
) -> dict[str, Any]:
    """Re-plan the inspection route of a survey, keeping its building grouping.

    Reads ``flagged_buildings`` as it is, plans the route (:mod:`heritage.survey.route`),
    rewrites ``inspection_route`` and the ``visit_order`` of buildings and
    observations (one SQLite transaction for the observations).
    """
    required = {OBSERVATIONS_LAYER: ROUTE_COLUMNS, BUILDINGS_LAYER: BUILDING_ROUTE_COLUMNS}
    with open_survey(out, required) as out:
        return _replan_route(
            out, start, network, by_priority, progress or NullProgress(), site_gap_m
        )


def _replan_route(
    out: Path,
    start: tuple[float, float] | Path | None,
    network: Path | None,
    by_priority: bool,
    progress: Progress,
    site_gap_m: float = SITE_GAP_M,
) -> dict[str, Any]:
    import pyogrio

    from heritage.io.geo import read_vector

    progress.start("Planning the inspection route", total=1)
    buildings = pyogrio.read_dataframe(out, layer=BUILDINGS_LAYER)
    net = read_vector(network) if network is not None else None
    sites: list[Any] = []
    problems: list[str] = []
    if len(buildings):
        visit, legs, total_m, sites, problems = _route(
            buildings, _start_point(start), net, by_priority, site_gap_m
        )
        buildings = buildings.assign(visit_order=visit.astype("int64").to_numpy())
        buildings = buildings.assign(site=_site_of(buildings, sites))
    else:
        legs = _empty_legs()
        total_m = 0.0
    visit_of_building: dict[int, int] = {}
    if len(buildings):
        pairs = zip(buildings["building_id"], buildings["visit_order"], strict=True)
        visit_of_building = {int(b): int(v) for b, v in pairs}
    con = connect_gpkg(out)
    with con:
        con.execute(f'UPDATE "{OBSERVATIONS_LAYER}" SET visit_order = NULL')
        con.executemany(
            f'UPDATE "{OBSERVATIONS_LAYER}" SET visit_order = ? WHERE building_id = ?',
            [(v, b) for b, v in visit_of_building.items()],
        )
    con.close()
    pyogrio.write_dataframe(
        _multipolygons(buildings), out, layer=BUILDINGS_LAYER, driver="GPKG",
        geometry_type="MultiPolygon",
    )  # fmt: skip
    pyogrio.write_dataframe(legs, out, layer=ROUTE_LAYER, driver="GPKG", geometry_type="LineString")
    for p in problems:
        progress.message(f"warning: {p}")
    progress.step(1, route_m=round(float(total_m), 1))
    return {
        "buildings": len(buildings),
        "route_m": float(round(total_m, 3)),
        "sites": [site.as_dict() for site in sites],
        "problems": problems,
    }
