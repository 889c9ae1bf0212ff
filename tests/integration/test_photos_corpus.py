"""`heritage photos` on the real exif-gps corpus (every expected position, every skipped
file with its reason), and a ``heritage photos`` process killed mid-run."""

from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import shapely
from click.testing import CliRunner
from factories import geotagged
from helpers import read_layer
from pyogrio import raw

from heritage.cli import cli
from heritage.io.gpkg import list_layers
from heritage.kernel.records import SkipReason
from heritage.survey.photos import import_photos

HERITAGE = Path(sys.executable).parent / "heritage"
EXIF_GPS_EXPECTED = 17


def photo_points(gpkg: Path) -> dict[str, shapely.Point]:
    _meta, _fid, geoms, fields = raw.read(str(gpkg), layer="photos", columns=["path"])
    return dict(zip(fields[0], shapely.from_wkb(np.asarray(geoms)), strict=True))


# ---------------------------------------------------------------- real corpus


@pytest.fixture(scope="module")
def corpus_gpkg(exif_gps: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("corpus") / "x.gpkg"
    result = CliRunner().invoke(cli, ["photos", str(exif_gps), "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out, result.output


def test_cli_places_every_expected_photo_within_1e_6(corpus_gpkg, exif_gps: Path) -> None:
    out, _ = corpus_gpkg
    points = photo_points(out)
    features = json.loads((exif_gps / "expected_gps_points.geojson").read_text())["features"]
    assert len(points) == len(features) == EXIF_GPS_EXPECTED
    for feat in features:
        lon, lat = feat["geometry"]["coordinates"]
        target = (exif_gps / feat["properties"]["file"]).resolve()
        (path,) = [p for p in points if (out.parent / p).resolve() == target]
        assert "\\" not in path
        assert abs(points[path].x - lon) < 1e-6 and abs(points[path].y - lat) < 1e-6


def test_cli_lists_every_other_image_with_its_reason(corpus_gpkg, exif_gps: Path) -> None:
    out, output = corpus_gpkg
    with (exif_gps / "manifest.csv").open() as fh:
        manifest = {r["file"]: r for r in csv.DictReader(fh)}
    invalid = {(out.parent / r["path"]).resolve(): r for r in read_layer(out, "invalid_photos")}
    photos = {(out.parent / r["path"]).resolve(): r for r in read_layer(out, "photos")}
    for name, row in manifest.items():
        target = (exif_gps / name).resolve()
        if row["lat"]:
            assert target in photos, name
            assert photos[target]["sha256"] == row["sha256"]
        else:
            assert invalid[target]["reason"] == SkipReason.NO_GPS, name
            assert invalid[target]["sha256"] == row["sha256"]
            assert invalid[target]["file_name"] == Path(name).name
    assert len(invalid) + len(photos) == len(manifest) == 36
    assert "imported 17" in output and "no_gps: 19" in output


def test_photo_attributes_and_geometry_type(corpus_gpkg) -> None:
    out, _ = corpus_gpkg
    assert list_layers(out) == {"photos": "Point Z", "invalid_photos": None}
    rows = {r["file_name"]: r for r in read_layer(out, "photos")}
    iphone = rows["iphone_hdr_NO.jpg"]
    assert iphone["altitude"] == pytest.approx(639.588, abs=1e-3)
    assert iphone["heading"] == pytest.approx(212.872, abs=1e-3)
    assert iphone["camera"] == "Apple iPhone 6"
    assert (iphone["width"], iphone["height"], iphone["orientation"]) == (3264, 2448, 1)
    assert iphone["taken_at"] == "2015-04-10T20:12:23"
    heic = rows["IMG_5195.HEIC"]
    assert heic["file_format"] == "HEIF" and heic["width"] > 0 and heic["longitude"] < 0
    assert rows["HMD_Nokia_8.3_5G.heif"]["altitude"] == pytest.approx(1942.422, abs=1e-3)
    points = photo_points(out)
    z = {Path(p).name: pt.z for p, pt in points.items()}
    assert z["iphone_hdr_NO.jpg"] == pytest.approx(639.588, abs=1e-3)
    assert np.isnan(z["DSCN0010.jpg"])  # unknown altitude: NaN, not a fake 0
    with sqlite3.connect(out) as con:
        assert con.execute("PRAGMA user_version").fetchone()[0] == 10200  # GeoPackage 1.2


def test_rerun_adds_nothing(corpus_gpkg, exif_gps: Path) -> None:
    out, _ = corpus_gpkg
    before = (len(read_layer(out, "photos")), len(read_layer(out, "invalid_photos")))
    summary = import_photos([exif_gps], out)
    after = (len(read_layer(out, "photos")), len(read_layer(out, "invalid_photos")))
    assert before == after == (17, 19)
    assert (summary.imported, summary.already_imported, summary.invalid_written) == (0, 17, 0)


# ------------------------------------------------------------- interruption


def test_sigkill_mid_run_keeps_a_consistent_prefix_and_rerun_completes(tmp_path: Path) -> None:
    photos = tmp_path / "many"
    photos.mkdir()
    total = 200
    for i in range(total):
        geotagged(photos / f"p{i:04d}.jpg", 40 + i / 1000, 10 + i / 1000)
    out = tmp_path / "run.gpkg"
    cmd = [str(HERITAGE), "-q", "photos", str(photos), "-o", str(out), "--batch-size", "5"]
    # What is tested is a process kill: the kernel keeps what was written, so SQLite's
    # fsync (which guards against power loss, ~0.2 s per commit on a busy shared disk)
    # only slows the test down. GDAL reads this config option from the environment.
    env = {**os.environ, "OGR_SQLITE_SYNCHRONOUS": "OFF"}
    proc = subprocess.Popen(
        [*cmd, "--json-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    done = 0
    try:
        for line in proc.stdout:  # poll the progress stream, no sleep
            event = json.loads(line)
            if event["event"] == "step" and event["done"] >= 40:
                done = event["done"]
                os.kill(proc.pid, signal.SIGKILL)
                break
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL and done >= 40

    kept = sorted(r["path"] for r in read_layer(out, "photos"))
    n = len(kept)
    assert 35 <= n < total and n % 5 == 0  # whole batches only
    assert kept == [f"many/p{i:04d}.jpg" for i in range(n)]  # the prefix, in scan order

    result = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    rows = read_layer(out, "photos")
    assert len(rows) == total
    assert len({r["sha256"] for r in rows}) == total
    assert read_layer(out, "invalid_photos") == []
    assert (
        f"imported {total - n} geotagged photo(s), {n} already in the GeoPackage" in result.stdout
    )
