"""EXIF reading (heritage.io.exif) of the real exif-gps corpus: every expected position,
altitude, heading and camera of its manifest, and the files that broke exifread."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from heritage.io.exif import read_exif
from heritage.kernel.records import SkipReason

# ------------------------------------------------------------------- real corpus


def _expected(exif_gps: Path) -> list[dict]:
    data = json.loads((exif_gps / "expected_gps_points.geojson").read_text())
    return data["features"]


def test_every_expected_point_reads_within_1e_6(exif_gps: Path) -> None:
    features = _expected(exif_gps)
    assert len(features) == 17
    for feat in features:
        lon, lat = feat["geometry"]["coordinates"]
        info = read_exif(exif_gps / feat["properties"]["file"])
        assert info.problem is None, (feat["properties"]["file"], info.message)
        assert info.position is not None
        assert abs(info.position.lat - lat) < 1e-6, feat["properties"]["file"]
        assert abs(info.position.lon - lon) < 1e-6, feat["properties"]["file"]


def test_altitude_heading_and_camera_match_the_manifest(exif_gps: Path) -> None:
    with (exif_gps / "manifest.csv").open() as fh:
        rows = [r for r in csv.DictReader(fh) if r["lat"]]
    checked_alt = checked_heading = 0
    for row in rows:
        info = read_exif(exif_gps / row["file"])
        if row["altitude_m"]:
            assert info.position.alt == pytest.approx(float(row["altitude_m"]), abs=1e-3)
            checked_alt += 1
        else:
            assert info.position.alt is None, row["file"]
        if row["img_direction_deg"]:
            assert info.heading == pytest.approx(float(row["img_direction_deg"]), abs=1e-3)
            assert info.heading_source.startswith("gps_img_direction")
            checked_heading += 1
        if row["camera"]:
            assert row["camera"] in (info.camera or ""), row["file"]
        if row["datetime_original"]:
            assert info.taken_at_source == "DateTimeOriginal"
            assert info.taken_at.startswith(
                row["datetime_original"].replace(":", "-", 2).replace(" ", "T")
            )
    assert (checked_alt, checked_heading) == (6, 5)  # manifest rows with values


def test_signs_from_real_files(exif_gps: Path) -> None:
    kodak = read_exif(exif_gps / "gps_edge_cases/Kodak_CX7530.jpg")  # ref S
    assert kodak.position.lat == pytest.approx(-0.3713, abs=1e-6)
    iphone = read_exif(exif_gps / "gps_heic/IMG_5195.HEIC")  # ref W, HEIC container
    assert iphone.position.lon == pytest.approx(-94.2887722, abs=1e-6)
    assert iphone.taken_at == "2021-04-11T15:47:53-05:00"  # OffsetTimeOriginal kept


@pytest.mark.parametrize(
    "name", ["87_OSError.jpg", "nikon_D3100_TypeError.jpg", "67-0_length_string.jpg"]
)
def test_exifread_regression_files_still_give_gps(exif_gps: Path, name: str) -> None:
    info = read_exif(exif_gps / "gps_edge_cases" / name)
    assert info.problem is None and info.position is not None


def test_orientation_files(exif_gps: Path) -> None:
    for n in range(1, 9):
        for kind in ("landscape", "portrait"):
            info = read_exif(exif_gps / f"orientation/{kind}_{n}.jpg")
            assert info.orientation == n
            assert info.problem is SkipReason.NO_GPS


def test_photos_without_gps_or_exif(exif_gps: Path) -> None:
    no_exif = read_exif(exif_gps / "no_gps/no_exif.jpg")
    assert no_exif.problem is SkipReason.NO_GPS and not no_exif.has_exif
    canon = read_exif(exif_gps / "no_gps/Canon_40D.jpg")
    assert canon.problem is SkipReason.NO_GPS and canon.has_exif
    assert canon.camera == "Canon EOS 40D"  # make not repeated
