"""`heritage photos` on generated photos: broken files, duplicates, re-runs, a cancel.

The real corpus and a killed process: ``tests/integration/test_photos_corpus.py``.
"""

from __future__ import annotations

import csv
import json
import resource
import shutil
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest
import shapely
from click.testing import CliRunner
from factories import geotagged
from helpers import read_layer
from PIL import Image
from PIL.TiffImagePlugin import IFDRational as R

from heritage.cli import cli
from heritage.io.gpkg import BatchWriter, Field, LayerSchema, append_batch, list_layers, read_rows
from heritage.kernel.errors import DataError, InputNotFoundError, OutputNotWritableError
from heritage.kernel.records import SkipReason
from heritage.survey.photos import ImportConfig, check_image, find_photo_files, import_photos

HERITAGE = Path(sys.executable).parent / "heritage"


# -------------------------------------------------------------- broken files


def _png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def _jpeg_claiming(src: Path, dst: Path, width: int, height: int) -> Path:
    data = bytearray(src.read_bytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    dst.write_bytes(bytes(data))
    return dst


@pytest.fixture
def messy(tmp_path: Path) -> Path:
    d = tmp_path / "survey"
    (d / "sub").mkdir(parents=True)
    good = geotagged(d / "good.JPG", 43.5, 11.9, alt=-3.5)
    geotagged(d / "sub" / "second.jpeg", 43.6, 11.8)
    geotagged(d / "sub" / "scan.PNG", -12.25, -77.0, format="PNG")
    shutil.copy(good, d / "sub" / "copy_of_good.jpg")
    data = good.read_bytes()
    (d / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (d / "empty.jpg").write_bytes(b"")
    (d / "notes.jpg").write_text("this is not a photo\n")
    Image.new("RGB", (8, 8)).save(d / "actually_gif.jpg", format="GIF")
    Image.new("RGB", (8, 8)).save(d / "raster.bmp")
    Image.new("RGB", (8, 8)).save(d / "plain.jpg")  # no EXIF at all
    geotagged(d / "nowhere.jpg", 0.0, 0.0)
    ex = Image.Exif()
    ex[0x8825] = {1: "N", 2: (R(10, 1), R(5, 0), R(0, 1)), 3: "E", 4: (R(1, 1), R(0, 1), R(0, 1))}
    Image.new("RGB", (8, 8)).save(d / "bad_rational.jpg", exif=ex)
    (d / "bomb.png").write_bytes(_png_header(100_000, 100_000))
    _jpeg_claiming(d / "plain.jpg", d / "bomb.jpg", 60_000, 60_000)
    (d / "readme.txt").write_text("ignored")
    (d / ".hidden").mkdir()
    geotagged(d / ".hidden" / "skip.jpg", 1, 1)
    return d


EXPECTED_REASONS = {
    "copy_of_good.jpg": "duplicate",
    "truncated.jpg": "unreadable_image",
    "empty.jpg": "unreadable_image",
    "notes.jpg": "unreadable_image",
    "actually_gif.jpg": "unsupported_format",
    "raster.bmp": "unsupported_format",
    "plain.jpg": "no_gps",
    "nowhere.jpg": "zero_coordinates",
    "bad_rational.jpg": "corrupt_exif",
    "bomb.png": "unreadable_image",
    "bomb.jpg": "unreadable_image",
    ".hidden": "skipped_folder",  # a folder not read is listed, never skipped in silence
}


def test_messy_folder(messy: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "survey.gpkg"
    summary = import_photos([messy], out, ImportConfig(batch_size=3))
    photos = {r["file_name"]: r for r in read_layer(out, "photos")}
    invalid = {r["file_name"]: r for r in read_layer(out, "invalid_photos")}
    assert set(photos) == {"good.JPG", "second.jpeg", "scan.PNG"}
    assert {k: v["reason"] for k, v in invalid.items()} == EXPECTED_REASONS
    assert summary.found == 14 and summary.imported == 3
    assert summary.skipped == {
        "duplicate": 1,
        "unreadable_image": 5,
        "unsupported_format": 2,
        "no_gps": 1,
        "zero_coordinates": 1,
        "corrupt_exif": 1,
        "skipped_folder": 1,
    }
    assert photos["good.JPG"]["altitude"] == pytest.approx(-3.5)  # below sea level
    assert photos["scan.PNG"]["latitude"] == pytest.approx(-12.25)
    assert photos["scan.PNG"]["longitude"] == pytest.approx(-77.0)
    assert photos["second.jpeg"]["path"] == "../survey/sub/second.jpeg"
    assert "good.JPG" in invalid["copy_of_good.jpg"]["message"]
    assert "too large" in invalid["bomb.png"]["message"]
    assert "too large" in invalid["bomb.jpg"]["message"]
    assert "truncated" in invalid["truncated.jpg"]["message"]
    assert invalid["empty.jpg"]["message"].startswith("empty file")
    assert invalid["empty.jpg"]["sha256"] is not None
    # a second run adds nothing, not even invalid rows
    again = import_photos([messy], out)
    assert (again.imported, again.invalid_written, again.already_imported) == (0, 0, 3)
    assert len(read_layer(out, "invalid_photos")) == len(EXPECTED_REASONS)


def test_decompression_bomb_is_refused_fast_without_memory(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header(100_000, 100_000))  # 10 gigapixels = 30 GB decoded
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    check = check_image(bomb)
    elapsed = time.perf_counter() - started
    rss_growth_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    assert check.problem is SkipReason.UNREADABLE_IMAGE
    assert "too large" in check.message
    assert elapsed < 0.5 and rss_growth_mb < 50
    # just above our own limit, below Pillow's hard error: still refused, from the header
    big = _jpeg_claiming(geotagged(tmp_path / "s.jpg", 1, 1), tmp_path / "big.jpg", 12_000, 9_000)
    assert check_image(big, max_pixels=100_000_000).problem is SkipReason.UNREADABLE_IMAGE
    assert "108 megapixels" in check_image(big, max_pixels=100_000_000).message


def test_rows_for_duplicates_within_one_scan_and_across_runs(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    geotagged(a / "one.jpg", 10, 10)
    out = tmp_path / "o.gpkg"
    import_photos([a], out)
    shutil.copy(a / "one.jpg", b / "one_again.jpg")
    summary = import_photos([a, b], out)
    assert summary.already_imported == 1 and summary.skipped == {"duplicate": 1}
    (row,) = read_layer(out, "invalid_photos")
    assert row["path"] == "b/one_again.jpg" and "a/one.jpg" in row["message"]


def test_two_d_layer_when_no_altitude(tmp_path: Path) -> None:
    d = tmp_path / "p"
    d.mkdir()
    geotagged(d / "x.jpg", 1, 2)
    out = tmp_path / "o.gpkg"
    summary = import_photos([d], out)
    assert summary.geometry_type == "Point" and list_layers(out)["photos"] == "Point"
    # a later photo with altitude keeps the layer 2D; altitude stays in the field
    geotagged(d / "y.jpg", 3, 4, alt=100.0)
    import_photos([d], out)
    assert {r["file_name"]: r["altitude"] for r in read_layer(out, "photos")} == {
        "x.jpg": None,
        "y.jpg": 100.0,
    }


def test_empty_folder_still_creates_both_layers(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    out = tmp_path / "o.gpkg"
    summary = import_photos([tmp_path / "empty"], out)
    assert summary.found == 0
    assert list_layers(out) == {"photos": "Point", "invalid_photos": None}


def test_scan_is_recursive_case_insensitive_and_sorted(messy: Path) -> None:
    names = [p.relative_to(messy).as_posix() for p in find_photo_files([messy])]
    assert names == sorted(names)
    assert "sub/scan.PNG" in names and "good.JPG" in names
    assert "readme.txt" not in names and ".hidden/skip.jpg" not in names


# ------------------------------------------------------------------- errors


def test_missing_folder_and_unwritable_output(tmp_path: Path) -> None:
    with pytest.raises(InputNotFoundError, match="does not exist"):
        import_photos([tmp_path / "nope"], tmp_path / "o.gpkg")
    (tmp_path / "photos").mkdir()
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(OutputNotWritableError):
        import_photos([tmp_path / "photos"], blocker / "o.gpkg")
    fake = tmp_path / "fake.gpkg"
    fake.write_text("not a geopackage")
    with pytest.raises(OutputNotWritableError, match="is not a GeoPackage"):
        import_photos([tmp_path / "photos"], fake)
    with pytest.raises(OutputNotWritableError, match=r"\.gpkg"):
        import_photos([tmp_path / "photos"], tmp_path / "out.shp")


def test_console_script_exit_codes(tmp_path: Path) -> None:
    missing = subprocess.run(
        [str(HERITAGE), "photos", str(tmp_path / "nope"), "-o", str(tmp_path / "o.gpkg")],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 1
    assert missing.stderr.startswith("Error: photo folder") and "Traceback" not in missing.stderr
    (tmp_path / "p").mkdir()
    geotagged(tmp_path / "p" / "a.jpg", 5, 5)
    ok = subprocess.run(
        [str(HERITAGE), "photos", str(tmp_path / "p"), "-o", str(tmp_path / "o.gpkg")],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    assert "imported 1 geotagged photo(s)" in ok.stdout


def test_json_progress(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    for i in range(3):
        geotagged(tmp_path / "p" / f"{i}.jpg", 5 + i, 5)
    result = CliRunner().invoke(
        cli, ["photos", str(tmp_path / "p"), "-o", str(tmp_path / "o.gpkg"), "--json-progress"]
    )
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.output.splitlines()]
    assert events[0] == {"event": "start", "stage": "Importing photos", "total": 3}
    assert [e["done"] for e in events if e["event"] == "step"] == [1, 2, 3]
    assert events[-1]["event"] == "summary" and events[-1]["imported"] == 3


# ------------------------------------------------------------- interruption


def test_cancel_keeps_every_photo_inspected_so_far(tmp_path: Path) -> None:
    from heritage.kernel.errors import CancelledError
    from heritage.kernel.progress import NullProgress

    class CancelAfter(NullProgress):
        def step(self, n: int = 1, **info: object) -> None:
            self.done = getattr(self, "done", 0) + n
            if self.done == 7:
                self.cancel()

    (tmp_path / "p").mkdir()
    for i in range(12):
        geotagged(tmp_path / "p" / f"{i:02d}.jpg", 10 + i / 100, 10)
    out = tmp_path / "o.gpkg"
    with pytest.raises(CancelledError):
        import_photos([tmp_path / "p"], out, ImportConfig(batch_size=5), CancelAfter())
    assert sorted(r["file_name"] for r in read_layer(out, "photos")) == [
        f"{i:02d}.jpg" for i in range(7)
    ]


# -------------------------------------------------------- generic gpkg helpers


def test_gpkg_helpers_attribute_table_batches_and_schema_check(tmp_path: Path) -> None:
    out = tmp_path / "g.gpkg"
    table = LayerSchema("notes", (Field("k"), Field("n", "int"), Field("ok", "bool")), None, None)
    with BatchWriter(out, table, batch_size=2) as writer:
        for i in range(5):
            writer.add({"k": f"r{i}", "n": None if i == 3 else i, "ok": i % 2 == 0})
        assert writer.written == 4 and writer.pending == 1
    assert writer.written == 5
    rows = read_rows(out, "notes", ["k", "n", "ok"])
    assert [r["n"] for r in rows] == [0, 1, 2, None, 4]
    assert [bool(r["ok"]) for r in rows] == [True, False, True, False, True]
    other = LayerSchema("notes", (Field("k"), Field("missing")), None, None)
    with pytest.raises(DataError, match="missing"):
        append_batch(out, other, [{"k": "x", "missing": "y"}])
    pts = LayerSchema("obs", (Field("v", "float"),), "Point")
    append_batch(out, pts, [{"v": 1.5}], [shapely.Point(1, 2)])
    assert list_layers(out) == {"notes": None, "obs": "Point"}


# ---------------------------------------------------------------- demo survey


def test_demo_photos_all_import_at_their_listed_positions(tmp_path: Path) -> None:
    demo = Path(__file__).resolve().parents[2] / "resources" / "demo"
    summary = import_photos([demo / "photos"], tmp_path / "demo.gpkg")
    assert (summary.found, summary.imported, summary.skipped_total) == (21, 21, 0)
    rows = {r["file_name"]: r for r in read_layer(tmp_path / "demo.gpkg", "photos")}
    with (demo / "positions.csv").open() as fh:
        listed = list(csv.DictReader(fh))
    assert len(listed) == 12
    for row in listed:
        got = rows[row["file"]]
        assert abs(got["latitude"] - float(row["latitude"])) < 1e-6
        assert abs(got["longitude"] - float(row["longitude"])) < 1e-6
        assert got["heading"] == pytest.approx(float(row["heading_deg"]))
    size = sum(p.stat().st_size for p in demo.rglob("*") if p.is_file())
    assert size < 5_000_000
