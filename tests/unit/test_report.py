"""heritage report on the demo survey classified by a tiny model (every photo flagged).

The survey is the demo's 21 photos (resources/demo/photos) classified by a random
64-px model whose threshold 0 flags every photo, so that buildings and a route
exist for sure. Checked: sections in visiting order with every photo and its
images, the CSV, the PDF rendered to PNG pages by pdftoppm, reviews, not assessable
photos, missing images, a survey without flagged buildings, the basemap, bad input
and an interrupted run.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pyogrio
import pytest
from click.testing import CliRunner
from helpers import mark_not_flagged, one_torch_thread
from PIL import Image

from heritage.kernel.errors import (
    CancelledError,
    DataError,
    InputNotFoundError,
    OutputNotWritableError,
)
from heritage.kernel.progress import NullProgress
from heritage.survey.pipeline import ClassifyConfig, connect_gpkg, run_survey
from heritage.survey.report import read_report_data
from heritage.survey.report_render import ReportConfig, write_report

ROOT = Path(__file__).resolve().parents[2]
DEMO_PHOTOS = ROOT / "resources" / "demo" / "photos"


@pytest.fixture(scope="module")
def demo_survey(tmp_path_factory) -> Path:
    from factories import tiny_model_dir

    tmp = tmp_path_factory.mktemp("report_survey")
    model = tiny_model_dir(tmp / "tiny0", model_id="tiny-survey", threshold=0.0)
    with one_torch_thread():
        summary = run_survey(ClassifyConfig((DEMO_PHOTOS,), tmp / "survey.gpkg", model_dir=model))
    assert summary.classified == 21 and summary.flagged == 21 and summary.buildings >= 5
    return tmp / "survey.gpkg"


@pytest.fixture()
def survey_copy(demo_survey: Path, tmp_path: Path) -> Path:
    """A private copy of the survey and its overlays (for tests that change them)."""
    dest = tmp_path / "copy"
    dest.mkdir()
    shutil.copy(demo_survey, dest / "survey.gpkg")
    shutil.copytree(demo_survey.parent / "survey_overlays", dest / "survey_overlays")
    return dest / "survey.gpkg"


class _Recorder(NullProgress):
    """Counts the steps of each stage."""

    def __init__(self) -> None:
        super().__init__()
        self.stage = ""
        self.steps: dict[str, int] = {}

    def start(self, stage: str, total: int | None = None) -> None:
        self.stage = stage
        self.steps[stage] = 0

    def step(self, n: int = 1, **info) -> None:
        self.steps[self.stage] += n


class _Sections(HTMLParser):
    """The building sections of a report: id, the photo file names (h3) and image srcs."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: list[dict] = []
        self._in_h3 = False
        self.all_imgs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "section" and "building" in (a.get("class") or ""):
            self.sections.append({"id": a["id"], "photos": [], "imgs": []})
        elif tag == "h3" and self.sections:
            self._in_h3 = True
            self.sections[-1]["photos"].append("")
        elif tag == "img":
            self.all_imgs.append(a["src"])
            if self.sections:
                self.sections[-1]["imgs"].append(a["src"])

    def handle_endtag(self, tag: str) -> None:
        if tag == "h3":
            self._in_h3 = False

    def handle_data(self, data: str) -> None:
        if self._in_h3:
            self.sections[-1]["photos"][-1] += data


def _parse(html: Path) -> _Sections:
    p = _Sections()
    p.feed(html.read_text(encoding="utf-8"))
    return p


def _expected(survey: Path) -> list[tuple[int, set[str]]]:
    """(building_id, its photo file names) in visiting order, from the GeoPackage."""
    b = pyogrio.read_dataframe(survey, layer="flagged_buildings").sort_values("visit_order")
    obs = pyogrio.read_dataframe(survey, layer="observations", read_geometry=False)
    return [
        (int(bid), set(obs.loc[obs["building_id"] == bid, "file_name"])) for bid in b["building_id"]
    ]


def test_report_html_pdf_csv_on_the_demo_survey(demo_survey: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "report.html"
    cfg = ReportConfig(demo_survey, out, pdf=tmp_path / "out" / "report.pdf", csv=True)
    progress = _Recorder()
    result = write_report(cfg, progress)
    assert progress.steps["Writing the PDF (pages laid out)"] == result.pdf_pages
    assert progress.steps["Preparing the photos and overlays"] == result.images

    expected = _expected(demo_survey)
    parsed = _parse(out)
    assert [s["id"] for s in parsed.sections] == [f"b{bid}" for bid, _ in expected]
    for section, (_, names) in zip(parsed.sections, expected, strict=True):
        shown = {h.split("·")[0].strip() for h in section["photos"]}
        assert shown == names  # every photo is flagged in this survey
        assert len(section["imgs"]) == 2 * len(names)  # photo and overlay of each
        assert sum("_overlay.jpg" in src for src in section["imgs"]) == len(names)
        for src in section["imgs"]:
            img = out.parent / src
            assert src.startswith("report_files/") and img.is_file()
            with Image.open(img) as im:
                assert im.format == "JPEG" and max(im.size) <= cfg.image_max_px
    assert (out.parent / "report_files" / "overview_map.png").is_file()
    html = out.read_text(encoding="utf-8")
    assert "Photos classified</th><td>21" in html
    assert "tiny-survey 0.0.1" in html and "Inspection route" in html
    assert result.buildings == len(expected) and result.missing_images == []
    assert not list(out.parent.glob(".*partial*"))

    with (out.parent / "report.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["building_id"]) for r in rows] == [bid for bid, _ in expected]
    assert [int(r["visit_order"]) for r in rows] == list(range(1, len(rows) + 1))
    for r in rows:
        c, a, b = (float(r[k]) for k in ("confidence_term", "extent_term", "corroboration_term"))
        k = c + (1 - c) * 0.5 * b  # docs/priority.md: certainty, then extent
        assert 100 * k * (0.55 + 0.45 * a) == pytest.approx(float(r["priority_score"]), abs=0.15)

    assert result.pdf_pages >= len(expected) // 3 and result.pdf_bytes > 10_000
    subprocess.run(
        ["pdftoppm", "-r", "40", "-png", str(cfg.pdf), str(tmp_path / "page")], check=True
    )
    pages = sorted(tmp_path.glob("page-*.png"))
    assert len(pages) == result.pdf_pages
    with Image.open(pages[0]) as im:
        colours = np.unique(np.asarray(im.convert("RGB")).reshape(-1, 3), axis=0)
    assert len(colours) > 50  # text, the map and its colours, not a blank page


def test_priority_terms_add_up_to_the_stored_score(demo_survey: Path) -> None:
    data = read_report_data(demo_survey)
    # scene mode (the default) records the strongest tile's box and the tile counts
    flagged = [p for b in data.buildings for p in b.photos if p.flagged]
    assert flagged and all(p.box is not None and p.photo_size for p in flagged)
    assert all(p.n_tiles and p.n_wall_tiles is not None for p in flagged)
    assert data.summary.inference_modes == ("scene",) and data.summary.n_not_assessable == 0
    for b in data.buildings:
        t = b.terms
        assert t is not None and 0 <= t.c <= 1 and 0 <= t.a <= 1 and 0 <= t.b < 1
        assert 100 * t.k * t.m == pytest.approx(b.score, abs=1e-6)
        assert t.k == pytest.approx(t.c + (1 - t.c) * t.gain * t.b, abs=1e-9)
        assert t.m == pytest.approx(t.base + (1 - t.base) * t.a)
        assert t.n == b.n_flagged
        assert [p.flagged for p in b.photos] == sorted((p.flagged for p in b.photos), reverse=True)


def test_reviews_not_assessable_and_missing_images(survey_copy: Path, tmp_path: Path) -> None:
    obs = pyogrio.read_dataframe(survey_copy, layer="observations", read_geometry=False)
    first = _expected(survey_copy)[0][1]
    name = sorted(first)[0]
    sha = obs.loc[obs["file_name"] == name, "sha256"].iloc[0]
    other = obs.loc[obs["file_name"] != name].iloc[0]
    con = connect_gpkg(survey_copy)
    with con:
        con.execute(
            "CREATE TABLE reviews (id INTEGER PRIMARY KEY, sha256 TEXT, verdict TEXT, "
            "reviewer TEXT, reviewed_at TEXT, note TEXT)"
        )
        con.executemany(
            "INSERT INTO reviews (sha256, verdict, reviewer, reviewed_at, note) VALUES (?,?,?,?,?)",
            [
                (sha, "unsure", "ana", "2026-12-01T10:00:00", "too dark"),
                (sha, "confirmed", "ana", "2026-12-02T09:00:00", "crack above the door"),
                (other["sha256"], "false_alarm", "ben", "2026-12-02T09:05:00", None),
            ],
        )
        con.execute(
            "INSERT INTO gpkg_contents (table_name, data_type, identifier) "
            "VALUES ('reviews', 'attributes', 'reviews')"
        )
        con.execute(
            "UPDATE observations SET decision = 'not_assessable', flagged = 0 WHERE file_name = ?",
            (obs["file_name"].iloc[-1],),
        )
    con.close()
    (survey_copy.parent / other["thumbnail_path"]).unlink()

    out = tmp_path / "r.html"
    result = write_report(ReportConfig(survey_copy, out))
    html = out.read_text(encoding="utf-8")
    assert "Reviewed</th><td>2: confirmed 1, false_alarm 1" in html
    assert "review: confirmed by ana, 2026-12-02T09:00:00: \u201ccrack above the door\u201d" in html
    assert "too dark" not in html  # only the latest review of a photo
    assert "Not assessable (no wall in view)</th><td>1" in html
    assert "photo not available" in html
    assert len(result.missing_images) == 1 and other["file_name"] in result.missing_images[0]
    data = read_report_data(survey_copy)
    assert data.summary.reviews == {"confirmed": 1, "false_alarm": 1}


def test_survey_without_flagged_buildings_says_so(survey_copy: Path, tmp_path: Path) -> None:
    from heritage.survey.pipeline import regroup_survey

    mark_not_flagged(survey_copy)
    totals = regroup_survey(survey_copy)
    assert totals["buildings"] == 0
    out = tmp_path / "empty.html"
    result = write_report(ReportConfig(survey_copy, out, pdf=tmp_path / "empty.pdf", csv=True))
    html = out.read_text(encoding="utf-8")
    assert "No building was flagged in this survey" in html
    assert "<section" not in html
    assert result.buildings == 0 and result.pdf_pages >= 1
    assert (tmp_path / "empty.csv").read_text().count("\n") == 1  # the header only
    assert "no flagged building" in result.lines()[0]


def test_embedded_images_make_one_file(demo_survey: Path, tmp_path: Path) -> None:
    out = tmp_path / "one.html"
    title = 'Round "A" & B </style>'
    write_report(ReportConfig(demo_survey, out, embed_images=True, image_max_px=128, title=title))
    text = out.read_text(encoding="utf-8")
    assert "<h1>Round &#34;A&#34; &amp; B &lt;/style&gt;</h1>" in text
    assert 'content: "Round \\"A\\" & B \\3c /style>";' in text  # a CSS string
    parsed = _parse(out)
    assert parsed.all_imgs and all(s.startswith("data:image/") for s in parsed.all_imgs)
    assert not (tmp_path / "one_files").exists()


def test_cli_json_progress_and_errors(demo_survey: Path, tmp_path: Path) -> None:
    from heritage.cli import cli

    runner = CliRunner()
    out = tmp_path / "cli.html"
    res = runner.invoke(cli, ["report", str(demo_survey), "-o", str(out), "--json-progress"])
    assert res.exit_code == 0, res.output
    events = [json.loads(line) for line in res.stdout.splitlines()]
    stages = [e["stage"] for e in events if e["event"] == "start"]
    assert stages == [
        "Drawing the overview map",
        "Preparing the photos and overlays",
        "Writing the HTML",
    ]
    steps = [e for e in events if e.get("stage") == stages[1] and e["event"] == "step"]
    assert steps[-1]["percent"] == 100.0 and len(steps) == steps[-1]["total"]
    assert events[-1]["event"] == "summary" and events[-1]["html"] == str(out)

    with pytest.raises(InputNotFoundError):
        write_report(ReportConfig(tmp_path / "nope.gpkg", out))
    with pytest.raises(OutputNotWritableError, match=r"\.html"):
        write_report(ReportConfig(demo_survey, tmp_path / "r.txt"))
    with pytest.raises(OutputNotWritableError, match=r"\.pdf"):
        write_report(ReportConfig(demo_survey, out, pdf=demo_survey))
    from heritage.survey.photos import import_photos

    photos_only = tmp_path / "photos.gpkg"
    import_photos([DEMO_PHOTOS], photos_only)
    with pytest.raises(DataError, match="heritage classify"):
        write_report(ReportConfig(photos_only, out))


def test_cli_error_is_one_line(tmp_path: Path) -> None:
    res = subprocess.run(
        [str(Path(sys.executable).parent / "heritage"), "report", str(tmp_path / "x.gpkg"), "-o",
         str(tmp_path / "x.html")],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    assert res.returncode == 1
    assert res.stderr.strip().splitlines() == [
        f"Error: survey GeoPackage not found: {tmp_path / 'x.gpkg'}"
    ]


class _CancelAfter(NullProgress):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def step(self, n: int = 1, **info) -> None:
        self.n -= n
        if self.n <= 0:
            self.cancel()


def test_interrupted_run_keeps_the_previous_report(demo_survey: Path, tmp_path: Path) -> None:
    out = tmp_path / "keep.html"
    write_report(ReportConfig(demo_survey, out))
    before = out.read_bytes()
    files_before = sorted(p.name for p in (tmp_path / "keep_files").iterdir())
    with pytest.raises(CancelledError):
        write_report(ReportConfig(demo_survey, out, title="second"), _CancelAfter(5))
    assert out.read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "keep_files").iterdir()) == files_before
    assert not list(tmp_path.glob(".keep_files*"))


def _survey_bounds_3857(survey: Path) -> tuple[float, float, float, float]:
    obs = pyogrio.read_dataframe(survey, layer="observations").to_crs("EPSG:3857")
    x0, y0, x1, y1 = obs.total_bounds
    return x0 - 500, y0 - 500, x1 + 500, y1 + 500


def _has_colour(png: Path, rgb: tuple[int, int, int], share: float = 0.05) -> bool:
    with Image.open(png) as im:
        a = np.asarray(im.convert("RGB")).reshape(-1, 3).astype(int)
    close = (np.abs(a - np.array(rgb)).sum(axis=1) < 30).mean()
    return bool(close >= share)


def test_basemap_raster_and_tile_folder(demo_survey: Path, tmp_path: Path) -> None:
    import rasterio
    from rasterio.transform import from_bounds

    from heritage.survey.basemap import _tile_range
    from heritage.survey.mapplot import plot_survey

    x0, y0, x1, y1 = _survey_bounds_3857(demo_survey)
    tif = tmp_path / "base.tif"
    data = np.zeros((3, 64, 64), dtype=np.uint8)
    data[0], data[1], data[2] = 40, 200, 90  # a green no map draws otherwise
    with rasterio.open(
        tif, "w", driver="GTiff", width=64, height=64, count=3, dtype="uint8",
        crs="EPSG:3857", transform=from_bounds(x0, y0, x1, y1, 64, 64),
    ) as ds:  # fmt: skip
        ds.write(data)
    plain = plot_survey(demo_survey, tmp_path / "plain.png", dpi=50)
    over_tif = plot_survey(demo_survey, tmp_path / "tif.png", dpi=50, basemap=tif)
    assert not _has_colour(plain, (40, 200, 90)) and _has_colour(over_tif, (40, 200, 90), 0.3)

    tiles = tmp_path / "tiles"
    z = 15
    tx0, ty0, tx1, ty1 = _tile_range(z, (x0, y0, x1, y1))
    for x in range(tx0, tx1 + 1):
        for y in range(ty0, ty1 + 1):
            (tiles / str(z) / str(x)).mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (256, 256), (200, 60, 200)).save(tiles / str(z) / str(x) / f"{y}.png")
    over_tiles = plot_survey(demo_survey, tmp_path / "tiles.png", dpi=50, basemap=tiles)
    assert _has_colour(over_tiles, (200, 60, 200), 0.3)

    empty = tmp_path / "empty_tiles"
    (empty / "3").mkdir(parents=True)
    with pytest.raises(DataError, match="no"):
        plot_survey(demo_survey, tmp_path / "e.png", basemap=empty)

    out = tmp_path / "based.html"
    write_report(ReportConfig(demo_survey, out, basemap=tif))
    assert "over base.tif" in out.read_text(encoding="utf-8")


def test_strongest_box_is_outlined(tmp_path: Path) -> None:
    from heritage.survey.report import ReportPhoto
    from heritage.survey.report_images import BOX_COLOUR, ImageJob, render_image

    src = tmp_path / "thumb.jpg"
    Image.new("RGB", (400, 300), (128, 128, 128)).save(src)
    photo = ReportPhoto(
        fid=1, file_name="p.jpg", sha256="ab", flagged=True, status="ok", decision=None,
        p_final=0.9, area_fraction=0.1, priority_score=50.0, priority_category="C",
        taken_at=None, heading=None, latitude=None, longitude=None, thumbnail_path=None,
        overlay_path=None, inference_mode="tiles", photo_size=(4000, 3000),
        box=(1000.0, 1000.0, 2000.0, 2000.0),
    )  # fmt: skip
    jpeg = render_image(ImageJob(photo, "photo", src, "x.jpg"), max_px=200)
    (tmp_path / "x.jpg").write_bytes(jpeg)
    with Image.open(tmp_path / "x.jpg") as im:
        assert im.size == (200, 150)
        a = np.asarray(im.convert("RGB")).astype(int)
    # the box (photo px 1000..2000 -> 50..100 here) is drawn, the centre is not
    assert np.abs(a[75, 50] - BOX_COLOUR).sum() < 90
    assert np.abs(a[75, 75] - (128, 128, 128)).sum() < 30
    # a whole-image overlay (square centre crop) of a 4:3 photo gets no box
    square = tmp_path / "overlay.png"
    Image.new("RGB", (224, 224), (128, 128, 128)).save(square)
    jpeg = render_image(ImageJob(photo, "overlay", square, "o.jpg"), max_px=224)
    (tmp_path / "o.jpg").write_bytes(jpeg)
    with Image.open(tmp_path / "o.jpg") as im:
        a = np.asarray(im.convert("RGB")).astype(int)
    assert np.abs(a - 128).max() < 10


def test_heading_text() -> None:
    from dataclasses import replace

    from heritage.survey.report import ReportPhoto

    base = ReportPhoto(
        fid=1, file_name="p.jpg", sha256="", flagged=False, status="ok", decision=None,
        p_final=None, area_fraction=None, priority_score=None, priority_category="none",
        taken_at=None, heading=None, latitude=None, longitude=None, thumbnail_path=None,
        overlay_path=None, inference_mode=None,
    )  # fmt: skip
    assert base.heading_text == ""
    assert replace(base, heading=200.0).heading_text == "200° (SSW)"
    assert replace(base, heading=359.0).heading_text == "359° (N)"
    assert re.fullmatch(r"\d+° \(\w+\)", replace(base, heading=90.4).heading_text)


def test_unflagged_photos_of_a_flagged_building_are_shown_small(
    survey_copy: Path, tmp_path: Path
) -> None:
    from heritage.survey.pipeline import regroup_survey

    multi = [names for _, names in _expected(survey_copy) if len(names) >= 2]
    assert multi, "the demo survey has a building with several photos"
    names = multi[0]
    unflag = sorted(names)[0]
    mark_not_flagged(survey_copy, unflag)
    regroup_survey(survey_copy)
    data = read_report_data(survey_copy)
    building = next(b for b in data.buildings if unflag in {p.file_name for p in b.photos})
    assert [p.file_name for p in building.photos][-1] == unflag  # flagged photos first

    out = tmp_path / "r.html"
    write_report(ReportConfig(survey_copy, out))
    section = next(s for s in _parse(out).sections if s["id"] == f"b{building.building_id}")
    flagged = {p.file_name for p in building.photos if p.flagged}
    assert any("Also photographed here, not flagged (1)" in h for h in section["photos"])
    assert {h.split("·")[0].strip() for h in section["photos"][:-1]} == flagged
    assert sum("_overlay.jpg" in s for s in section["imgs"]) == len(flagged)
    assert len(section["imgs"]) == 2 * len(flagged) + 1


def test_flagged_photos_not_grouped_or_without_position(survey_copy: Path, tmp_path: Path) -> None:
    from heritage.survey.pipeline import regroup_survey

    # a survey whose classification stopped before prioritising: observations only
    obs = pyogrio.read_dataframe(survey_copy, layer="observations")
    ungrouped = tmp_path / "ungrouped.gpkg"
    pyogrio.write_dataframe(obs, ungrouped, layer="observations", driver="GPKG")
    out = tmp_path / "u.html"
    result = write_report(ReportConfig(ungrouped, out))
    html = out.read_text(encoding="utf-8")
    assert result.buildings == 0
    assert "21 photo(s) are flagged but not grouped into buildings yet" in html
    assert "heritage group ungrouped.gpkg" in html and "No building was flagged" not in html

    # a flagged photo without position is on no building: said in the summary
    name = obs["file_name"].iloc[0]
    con = connect_gpkg(survey_copy)
    with con:
        con.execute(
            "UPDATE observations SET geom = NULL, status = 'no_location' WHERE file_name = ?",
            (name,),
        )
    con.close()
    regroup_survey(survey_copy)
    out = tmp_path / "p.html"
    write_report(ReportConfig(survey_copy, out))
    html = out.read_text(encoding="utf-8")
    assert "Flagged photos on no building</th><td>1 " in html
    assert "(1 without position)" in html
    assert name not in {h.split("·")[0].strip() for s in _parse(out).sections for h in s["photos"]}


def test_scale_bar_lengths_are_round() -> None:
    from heritage.survey.mapplot import nice_length

    assert [nice_length(s) for s in (90, 1000, 1200, 30_000, 3)] == [10, 200, 200, 5000, 0.5]


def test_bad_basemap_is_an_error_and_no_position_means_no_map(
    survey_copy: Path, tmp_path: Path
) -> None:
    from heritage.survey.pipeline import regroup_survey

    empty = tmp_path / "tiles"
    (empty / "12").mkdir(parents=True)
    out = tmp_path / "r.html"
    with pytest.raises(DataError, match=r"holds no \{z\}"):
        write_report(ReportConfig(survey_copy, out, basemap=empty))
    assert not out.exists() and not list(tmp_path.glob(".r_files*"))

    con = connect_gpkg(survey_copy)
    with con:
        con.execute("UPDATE observations SET geom = NULL, status = 'no_location'")
    con.close()
    regroup_survey(survey_copy)
    result = write_report(ReportConfig(survey_copy, out))
    html = out.read_text(encoding="utf-8")
    assert "No map: the survey has no photo with a position." in html
    assert "have no position, so none of them is on a building" in html
    assert result.buildings == 0


def test_a_report_written_again_reuses_unchanged_images(survey_copy: Path, tmp_path: Path) -> None:
    out = tmp_path / "again.html"
    first = write_report(ReportConfig(survey_copy, out))
    assert first.reused_images == 0 and first.images > 2
    before = {p.name: p.read_bytes() for p in (tmp_path / "again_files").glob("*.jpg")}
    second = write_report(ReportConfig(survey_copy, out))
    assert second.reused_images == second.images
    after = {p.name: p.read_bytes() for p in (tmp_path / "again_files").glob("*.jpg")}
    assert after == before
    # a changed source image is made again, the others are reused
    obs = pyogrio.read_dataframe(survey_copy, layer="observations", read_geometry=False)
    flagged = obs[obs["flagged"]].iloc[0]
    thumb = survey_copy.parent / flagged["thumbnail_path"]
    Image.new("RGB", (40, 30), (255, 0, 0)).save(thumb)
    third = write_report(ReportConfig(survey_copy, out))
    assert third.reused_images == third.images - 1
    changed = [n for n in after if n.endswith("_photo.jpg") and n in before]
    new = {p.name: p.read_bytes() for p in (tmp_path / "again_files").glob("*.jpg")}
    assert sum(new[n] != before[n] for n in changed) == 1
    # another image size: nothing reused
    assert write_report(ReportConfig(survey_copy, out, image_max_px=200)).reused_images == 0
