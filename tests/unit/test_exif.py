"""EXIF reading (heritage.io.exif): crafted edge cases (the real corpus:
``tests/integration/test_exif_corpus.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from PIL.TiffImagePlugin import IFDRational as R

from heritage.io import exif
from heritage.io.exif import (
    dji_yaw_from_xmp,
    dms_to_degrees,
    normalise_heading,
    ratio_to_float,
    read_exif,
)
from heritage.kernel.records import SkipReason

GPS_IFD, EXIF_IFD = 0x8825, 0x8769


def make_photo(
    path: Path,
    gps: dict | None = None,
    exif_ifd: dict | None = None,
    ifd0: dict | None = None,
    size: tuple[int, int] = (32, 24),
    color: tuple[int, int, int] = (120, 110, 100),
    **save: object,
) -> Path:
    """A small image with the given EXIF (Pillow writes it, exifread must read it)."""
    ex = Image.Exif()
    for tag, value in (ifd0 or {}).items():
        ex[tag] = value
    if gps is not None:
        ex[GPS_IFD] = gps
    if exif_ifd is not None:
        ex[EXIF_IFD] = exif_ifd
    Image.new("RGB", size, color).save(path, exif=ex, **save)
    return path


def dms(deg: int, minutes: int, seconds: R | int = 0) -> tuple:
    return (R(deg, 1), R(minutes, 1), seconds if isinstance(seconds, R) else R(seconds, 1))


# -------------------------------------------------------------- crafted EXIF


def test_south_west_and_below_sea_level(tmp_path: Path) -> None:
    gps = {1: "S", 2: dms(33, 51, 54), 3: "W", 4: dms(70, 30, 0), 5: 1, 6: R(125, 10)}
    info = read_exif(make_photo(tmp_path / "sw.jpg", gps))
    assert info.position.lat == pytest.approx(-(33 + 51 / 60 + 54 / 3600), abs=1e-9)
    assert info.position.lon == pytest.approx(-70.5, abs=1e-9)
    assert info.position.alt == pytest.approx(-12.5)


def test_zero_over_zero_component_reads_as_zero(tmp_path: Path) -> None:
    gps = {1: "N", 2: dms(10, 30, R(0, 0)), 3: "E", 4: dms(20, 15, R(0, 0))}
    info = read_exif(make_photo(tmp_path / "zz.jpg", gps))
    assert info.position.lat == pytest.approx(10.5)
    assert info.position.lon == pytest.approx(20.25)


def test_nonzero_over_zero_in_coordinate_is_corrupt(tmp_path: Path) -> None:
    gps = {1: "N", 2: dms(10, 30, 0), 3: "E", 4: (R(20, 1), R(15, 0), R(0, 1))}
    info = read_exif(make_photo(tmp_path / "z.jpg", gps))
    assert info.position is None
    assert info.problem is SkipReason.CORRUPT_EXIF
    assert "zero denominator" in info.message


def test_zero_denominator_altitude_and_heading_mean_unknown(tmp_path: Path) -> None:
    gps = {1: "N", 2: dms(10, 0), 3: "E", 4: dms(20, 0), 6: R(5, 0), 16: "T", 17: R(9, 0)}
    info = read_exif(make_photo(tmp_path / "a.jpg", gps))
    assert info.position is not None
    assert info.position.alt is None and info.heading is None
    assert any("altitude" in w.lower() for w in info.warnings)


def test_missing_refs_keep_the_stored_sign_with_a_warning(tmp_path: Path) -> None:
    info = read_exif(make_photo(tmp_path / "noref.jpg", {2: dms(45, 0), 4: dms(9, 30)}))
    assert info.position.lat == pytest.approx(45.0)
    assert info.position.lon == pytest.approx(9.5)
    assert any("GPSLatitudeRef" in w for w in info.warnings)


def test_zero_coordinates(tmp_path: Path) -> None:
    info = read_exif(make_photo(tmp_path / "0.jpg", {1: "N", 2: dms(0, 0), 3: "E", 4: dms(0, 0)}))
    assert info.problem is SkipReason.ZERO_COORDINATES and info.position is None


@pytest.mark.parametrize(("lat", "lon", "word"), [(95, 10, "latitude"), (45, 190, "longitude")])
def test_out_of_range(tmp_path: Path, lat: int, lon: int, word: str) -> None:
    gps = {1: "N", 2: dms(lat, 0), 3: "E", 4: dms(lon, 0)}
    info = read_exif(make_photo(tmp_path / "r.jpg", gps))
    assert info.problem is SkipReason.CORRUPT_EXIF
    assert word in info.message and "out of range" in info.message


def test_heading_normalised_and_magnetic_source(tmp_path: Path) -> None:
    gps = {1: "N", 2: dms(10, 0), 3: "E", 4: dms(20, 0), 16: "M", 17: R(370, 1)}
    info = read_exif(make_photo(tmp_path / "h.jpg", gps))
    assert info.heading == pytest.approx(10.0)
    assert info.heading_source == "gps_img_direction_magnetic"
    assert normalise_heading(-90) == 270 and normalise_heading(720) == 0


def test_dji_xmp_yaw_when_no_gps_direction(tmp_path: Path) -> None:
    xmp = (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><rdf:Description '
        b'drone-dji:FlightYawDegree="+45.10" drone-dji:GimbalYawDegree="-92.50"/>'
        b"</rdf:RDF></x:xmpmeta>"
    )
    gps = {1: "N", 2: dms(10, 0), 3: "E", 4: dms(20, 0)}
    info = read_exif(make_photo(tmp_path / "dji.jpg", gps, xmp=xmp))
    assert info.heading == pytest.approx(267.5)
    assert info.heading_source == "dji_gimbal_yaw"
    flight_only = b"<drone-dji:FlightYawDegree>-10.0</drone-dji:FlightYawDegree>"
    assert dji_yaw_from_xmp(flight_only) == (pytest.approx(350.0), "dji_flight_yaw")
    assert dji_yaw_from_xmp(b"nothing here") == (None, None)


def test_timestamp_sources(tmp_path: Path) -> None:
    gps = {1: "N", 2: dms(10, 0), 3: "E", 4: dms(20, 0)}
    original = make_photo(
        tmp_path / "t1.jpg",
        gps,
        exif_ifd={0x9003: "2020:01:02 03:04:05", 0x9011: "+02:00"},
        ifd0={0x0132: "2021:01:01 00:00:00"},
    )
    assert read_exif(original).taken_at == "2020-01-02T03:04:05+02:00"
    gps_time = {**gps, 7: (R(14, 1), R(5, 1), R(305, 10)), 29: "2019:07:08"}
    from_gps = read_exif(
        make_photo(tmp_path / "t2.jpg", gps_time, exif_ifd={0x9003: "0000:00:00 00:00:00"})
    )
    assert (from_gps.taken_at, from_gps.taken_at_source) == ("2019-07-08T14:05:30Z", "GPSDateStamp")
    plain = read_exif(make_photo(tmp_path / "t3.jpg", gps, ifd0={0x0132: "2018:02:03 04:05:06"}))
    assert (plain.taken_at, plain.taken_at_source) == ("2018-02-03T04:05:06", "DateTime")


def test_camera_orientation_and_png_exif(tmp_path: Path) -> None:
    gps = {1: "S", 2: dms(1, 0), 3: "E", 4: dms(2, 0)}
    path = make_photo(
        tmp_path / "p.png", gps, ifd0={0x010F: "Foo", 0x0110: "Bar 9", 0x0112: 6}, format="PNG"
    )
    info = read_exif(path)
    assert info.position.lat == pytest.approx(-1.0)
    assert info.camera == "Foo Bar 9"
    assert info.orientation == 6


def test_exifread_failure_is_corrupt_exif(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = make_photo(tmp_path / "c.jpg", {1: "N", 2: dms(10, 0), 3: "E", 4: dms(20, 0)})

    def boom(*args: object, **kwargs: object) -> dict:
        raise TypeError("unsupported operand")

    monkeypatch.setattr(exif.exifread, "process_file", boom)
    info = read_exif(path)
    assert info.problem is SkipReason.CORRUPT_EXIF
    assert "TypeError" in info.message


def test_helpers() -> None:
    from exifread.utils import Ratio

    assert ratio_to_float(Ratio(1, 0)) is None
    assert ratio_to_float(Ratio(0, 0)) is None
    assert ratio_to_float(Ratio(3, 4)) == 0.75
    assert ratio_to_float(7) == 7.0
    assert dms_to_degrees([R(1, 1), R(30, 1)]) == pytest.approx(1.5)
    with pytest.raises(ValueError):
        dms_to_degrees([])


def test_all_zero_over_zero_latitude_is_corrupt_not_a_position(tmp_path: Path) -> None:
    """Issue 25 item 4: 0/0 degrees is no value; it used to be placed at 0° and routed."""
    zz = (R(0, 0), R(0, 0), R(0, 0))
    gps = {1: "N", 2: zz, 3: "E", 4: (R(0, 0), R(1, 1), R(0, 0))}
    info = read_exif(make_photo(tmp_path / "zz.jpg", gps))
    assert info.position is None and info.problem is SkipReason.CORRUPT_EXIF
    assert "0/0" in info.message
    with pytest.raises(ValueError, match="0/0"):
        dms_to_degrees(zz)


@pytest.mark.parametrize(
    ("values", "word"),
    [(dms(44, 99), "minutes"), (dms(44, 10, 60), "seconds"), (dms(44, 60), "minutes")],
)
def test_minutes_or_seconds_of_60_or_more_are_corrupt(
    tmp_path: Path, values: tuple, word: str
) -> None:
    """Issue 25 item 4: 99 minutes used to read as 44.6775°."""
    gps = {1: "N", 2: values, 3: "E", 4: dms(11, 52)}
    info = read_exif(make_photo(tmp_path / "m.jpg", gps))
    assert info.position is None and info.problem is SkipReason.CORRUPT_EXIF
    assert word in info.message and "out of range" in info.message
    assert dms_to_degrees(dms(44, 59, R(5999, 100))) == pytest.approx(44 + 59 / 60 + 59.99 / 3600)
