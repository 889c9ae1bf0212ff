"""Read what a photo's EXIF says about where, when, which way and with what it was taken.

This is the only module that reads EXIF, and it reads it with ``exifread`` (Pillow
only decodes pixels, in :mod:`heritage.survey.photos`). A bad tag is data, not an exception:
:func:`read_exif` always returns an :class:`ExifInfo`, whose ``problem`` says why there
is no usable position (``no_gps``, ``zero_coordinates`` or ``corrupt_exif``).

Decisions, documented here because they shape the data:

- **Missing GPSLatitudeRef / GPSLongitudeRef**: the coordinate keeps the sign it was
  stored with (north / east for the usual unsigned rationals), and a warning is kept
  in ``ExifInfo.warnings``. Refs other than N/S/E/W are treated as missing.
- **Rationals with a zero denominator**: ``0/0`` in a minutes or seconds component
  reads as 0 (cameras write it for "unused", e.g. seconds when minutes carry
  decimals); ``0/0`` degrees (no value at all) and any other ``n/0`` make the position
  ``corrupt_exif``. For altitude and heading ``n/0`` means "unknown" (``None``) with a
  warning.
- **Out-of-range components**: minutes or seconds of 60 or more, and negative
  components (the sign is the ref's), make the position ``corrupt_exif``.
- **Out-of-range** latitude (beyond ±90) or longitude (beyond ±180) is ``corrupt_exif``;
  exactly 0/0 is ``zero_coordinates`` (the usual "no fix" placeholder).
- **Altitude** below sea level when ``GPSAltitudeRef`` is 1; a missing ref means above.
- **Heading**: ``GPSImgDirection`` (true or magnetic north as its ref says; no ref is
  taken as true north), else the DJI XMP ``drone-dji:GimbalYawDegree`` (where the
  camera points), else ``drone-dji:FlightYawDegree`` (where the aircraft points);
  always normalised to ``[0, 360)``.
- **Time**: ``DateTimeOriginal`` (with ``OffsetTimeOriginal`` appended when present),
  else GPS date + time (UTC, suffix ``Z``), else ``DateTime`` (with ``OffsetTime``);
  ISO 8601 ``YYYY-MM-DDTHH:MM:SS[±HH:MM|Z]``. Placeholders like ``0000:00:00`` are skipped.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import exifread

from heritage.kernel.records import GeoPosition, SkipReason

logger = logging.getLogger(__name__)

# exifread logs a WARNING for every file without EXIF ("File format not recognized");
# for a photo importer that is an ordinary case, reported through ExifInfo instead.
# Only quieten it when nobody configured that logger.
_EXIFREAD_LOGGER = logging.getLogger("exifread")
if _EXIFREAD_LOGGER.level == logging.NOTSET:
    _EXIFREAD_LOGGER.setLevel(logging.ERROR)

#: bytes read from the start of a file when looking for DJI XMP (XMP lives in the header)
XMP_SCAN_BYTES = 1 << 20

_DJI_YAW = {
    name: re.compile(
        rb"drone-dji:" + name.encode() + rb"""(?:\s*=\s*["']|>)\s*([-+]?[0-9]*\.?[0-9]+)"""
    )
    for name in ("GimbalYawDegree", "FlightYawDegree")
}


@dataclass(frozen=True, slots=True)
class GpsReading:
    """The outcome of reading the GPS tags: a position, or why there is none."""

    position: GeoPosition | None
    problem: SkipReason | None = None
    message: str = ""
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ExifInfo:
    """What the EXIF (and DJI XMP) of one file says.

    ``position`` is ``None`` exactly when ``problem`` is set; ``message`` explains it.
    ``has_exif`` is False when the file carries no EXIF block at all.
    """

    position: GeoPosition | None = None
    problem: SkipReason | None = None
    message: str = ""
    has_exif: bool = False
    heading: float | None = None
    heading_source: str | None = None
    taken_at: str | None = None
    taken_at_source: str | None = None
    camera: str | None = None
    orientation: int | None = None
    warnings: tuple[str, ...] = ()


def read_exif(path: str | Path) -> ExifInfo:
    """Read position, heading, time, camera and orientation from ``path`` with exifread.

    Never raises for bad metadata: an exifread failure becomes ``corrupt_exif`` (only
    when no GPS could be read at all). ``OSError`` from opening the file propagates.
    """
    path = Path(path)
    with path.open("rb") as fh:
        try:
            tags = exifread.process_file(
                fh, details=False, extract_thumbnail=False, truncate_tags=False
            )
        except Exception as exc:  # exifread raises many kinds on broken files
            logger.debug("exifread failed on %s: %r", path, exc)
            return ExifInfo(
                problem=SkipReason.CORRUPT_EXIF,
                message=f"EXIF could not be parsed ({type(exc).__name__}: {exc})",
                has_exif=True,
            )
        heading, heading_source, head_warn = heading_from_tags(tags)
        if heading is None:
            fh.seek(0)
            heading, heading_source = dji_yaw_from_xmp(fh.read(XMP_SCAN_BYTES))
    return info_from_tags(tags, heading=heading, heading_source=heading_source, warnings=head_warn)


def info_from_tags(
    tags: Mapping[str, Any],
    *,
    heading: float | None = None,
    heading_source: str | None = None,
    warnings: Sequence[str] = (),
) -> ExifInfo:
    """Build an :class:`ExifInfo` from an exifread tag dict (``process_file`` output)."""
    gps = gps_from_tags(tags)
    if heading is None and heading_source is None:
        heading, heading_source, head_warn = heading_from_tags(tags)
        warnings = (*warnings, *head_warn)
    taken_at, taken_source = timestamp_from_tags(tags)
    return ExifInfo(
        position=gps.position,
        problem=gps.problem,
        message=gps.message,
        has_exif=bool(tags),
        heading=heading,
        heading_source=heading_source,
        taken_at=taken_at,
        taken_at_source=taken_source,
        camera=camera_from_tags(tags),
        orientation=orientation_from_tags(tags),
        warnings=(*warnings, *gps.warnings),
    )


def ratio_to_float(value: Any) -> float | None:
    """A number from an EXIF rational (exifread ``Ratio``, ``Fraction``), int or float.

    ``None`` for a rational with a zero denominator.
    """
    den = getattr(value, "denominator", None)
    if den is not None and not isinstance(value, int):
        if den == 0:
            return None
        return value.numerator / den
    if isinstance(value, int | float):
        return float(value)
    raise TypeError(f"not a number: {value!r}")


def _values(tag: Any) -> list[Any]:
    vals = getattr(tag, "values", tag)
    if isinstance(vals, str | bytes):
        return [vals]
    return list(vals) if isinstance(vals, Sequence) else [vals]


def _text(tag: Any) -> str | None:
    if tag is None:
        return None
    vals = getattr(tag, "values", tag)
    if isinstance(vals, bytes):
        vals = vals.decode("utf-8", "replace")
    if not isinstance(vals, str):
        vals = str(getattr(tag, "printable", vals))
    text = vals.replace("\x00", "").strip()
    return text or None


def dms_to_degrees(values: Sequence[Any]) -> float:
    """Degrees from 1-3 rational components (degrees, minutes, seconds).

    The one place that checks GPS rationals. ``0/0`` in the minutes or seconds counts as
    0 (cameras write it for "unused"); ``ValueError`` when the degrees are ``0/0`` (no
    value at all), any other component has a zero denominator or is not finite, the
    minutes or seconds are negative or 60 or more. Negative degrees (a signed rational)
    make the whole value negative.
    """
    if not 1 <= len(values) <= 3:
        raise ValueError(f"expected 1 to 3 components, got {len(values)}")
    total, sign = 0.0, 1.0
    for index, (value, scale) in enumerate(zip(values, (1.0, 60.0, 3600.0), strict=False)):
        what = ("degrees", "minutes", "seconds")[index]
        number = ratio_to_float(value)
        if number is None:
            if value.numerator != 0:
                raise ValueError(f"{what} {value.numerator}/0 has a zero denominator")
            if index == 0:
                raise ValueError("degrees are 0/0 (no value)")
            continue
        if not math.isfinite(number):
            raise ValueError(f"{what} are not a finite number")
        if index == 0 and number < 0:
            sign, number = -1.0, -number
        elif index > 0 and not 0.0 <= number < 60.0:
            raise ValueError(f"{what} {number:g} are out of range 0..60")
        total += number / scale
    return sign * total


def _signed(
    tags: Mapping[str, Any], name: str, positive: str, negative: str, warnings: list[str]
) -> float:
    degrees = dms_to_degrees(_values(tags[f"GPS GPS{name}"]))
    ref = (_text(tags.get(f"GPS GPS{name}Ref")) or "").upper()[:1]
    if ref == negative:
        return -abs(degrees)
    if ref == positive:
        return abs(degrees)
    warnings.append(f"GPS{name}Ref missing or unknown ({ref or 'none'}); sign kept as stored")
    return degrees


def gps_from_tags(tags: Mapping[str, Any]) -> GpsReading:
    """The WGS84 position in an exifread tag dict, or why there is none."""
    if "GPS GPSLatitude" not in tags or "GPS GPSLongitude" not in tags:
        has_gps_block = any(k.startswith("GPS ") for k in tags)
        msg = (
            "GPS block has no latitude/longitude"
            if has_gps_block
            else ("no GPS position in EXIF" if tags else "no EXIF metadata")
        )
        return GpsReading(None, SkipReason.NO_GPS, msg)
    warnings: list[str] = []
    try:
        lat = _signed(tags, "Latitude", "N", "S", warnings)
        lon = _signed(tags, "Longitude", "E", "W", warnings)
    except (ValueError, TypeError, AttributeError, IndexError) as exc:
        return GpsReading(
            None, SkipReason.CORRUPT_EXIF, f"GPS latitude/longitude unreadable: {exc}"
        )
    if not (math.isfinite(lat) and math.isfinite(lon)):
        return GpsReading(None, SkipReason.CORRUPT_EXIF, "GPS latitude/longitude not finite")
    if lat == 0.0 and lon == 0.0:
        return GpsReading(
            None, SkipReason.ZERO_COORDINATES, "GPS position is 0,0 (camera had no fix)"
        )
    if not -90.0 <= lat <= 90.0:
        return GpsReading(
            None, SkipReason.CORRUPT_EXIF, f"latitude {lat:.6f} is out of range -90..90"
        )
    if not -180.0 <= lon <= 180.0:
        return GpsReading(
            None, SkipReason.CORRUPT_EXIF, f"longitude {lon:.6f} is out of range -180..180"
        )
    alt = altitude_from_tags(tags, warnings)
    return GpsReading(GeoPosition(lat=lat, lon=lon, alt=alt), warnings=tuple(warnings))


def altitude_from_tags(tags: Mapping[str, Any], warnings: list[str] | None = None) -> float | None:
    """Metres above sea level (negative below when ``GPSAltitudeRef`` is 1), or None."""
    tag = tags.get("GPS GPSAltitude")
    if tag is None:
        return None
    try:
        alt = ratio_to_float(_values(tag)[0])
    except (TypeError, IndexError):
        alt = None
    if alt is None or not math.isfinite(alt):
        if warnings is not None:
            warnings.append("GPSAltitude unreadable (zero denominator?); altitude unknown")
        return None
    ref_tag = tags.get("GPS GPSAltitudeRef")
    ref = _values(ref_tag)[0] if ref_tag is not None else 0
    if isinstance(ref, bytes):
        ref = ref[0] if ref else 0
    if ref in (1, "1"):
        return -abs(alt)
    return alt


def normalise_heading(degrees: float) -> float:
    """Degrees clockwise from north in ``[0, 360)`` (e.g. -90 -> 270, 370 -> 10)."""
    value = math.fmod(degrees, 360.0)
    if value < 0:
        value += 360.0
    return 0.0 if value == 360.0 else value


def heading_from_tags(
    tags: Mapping[str, Any],
) -> tuple[float | None, str | None, tuple[str, ...]]:
    """``(heading, source, warnings)`` from ``GPSImgDirection``; heading None when absent."""
    tag = tags.get("GPS GPSImgDirection")
    if tag is None:
        return None, None, ()
    try:
        value = ratio_to_float(_values(tag)[0])
    except (TypeError, IndexError):
        value = None
    if value is None or not math.isfinite(value):
        return None, None, ("GPSImgDirection unreadable (zero denominator?); heading unknown",)
    ref = (_text(tags.get("GPS GPSImgDirectionRef")) or "").upper()[:1]
    source = "gps_img_direction_magnetic" if ref == "M" else "gps_img_direction"
    return normalise_heading(value), source, ()


def dji_yaw_from_xmp(head: bytes) -> tuple[float | None, str | None]:
    """DJI gimbal (else flight) yaw from XMP bytes, normalised; ``(None, None)`` if absent."""
    for name, source in (
        ("GimbalYawDegree", "dji_gimbal_yaw"),
        ("FlightYawDegree", "dji_flight_yaw"),
    ):
        match = _DJI_YAW[name].search(head)
        if match:
            try:
                return normalise_heading(float(match.group(1))), source
            except ValueError:
                continue
    return None, None


def _iso(stamp: str | None) -> str | None:
    if not stamp:
        return None
    stamp = stamp.strip()
    for fmt in ("%Y:%m:%d %H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y:%m:%d %H:%M", "%Y-%m-%dT%H:%M:%S"):
        try:
            return datetime.strptime(stamp[:19], fmt).isoformat()
        except ValueError:
            continue
    return None


_OFFSET = re.compile(r"^[+-]\d{2}:\d{2}$")


def _with_offset(iso: str, offset: str | None) -> str:
    if offset and _OFFSET.match(offset.strip()):
        return iso + offset.strip()
    return iso


def timestamp_from_tags(tags: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """``(ISO 8601 time, source tag name)``; see the module docstring for the order."""
    original = _iso(_text(tags.get("EXIF DateTimeOriginal")))
    if original:
        offset = _text(tags.get("EXIF OffsetTimeOriginal"))
        return _with_offset(original, offset), "DateTimeOriginal"
    gps = _gps_timestamp(tags)
    if gps:
        return gps, "GPSDateStamp"
    plain = _iso(_text(tags.get("Image DateTime")))
    if plain:
        return _with_offset(plain, _text(tags.get("EXIF OffsetTime"))), "DateTime"
    return None, None


def _gps_timestamp(tags: Mapping[str, Any]) -> str | None:
    date = _text(tags.get("GPS GPSDate"))
    time_tag = tags.get("GPS GPSTimeStamp")
    if not date or time_tag is None:
        return None
    try:
        h, m, s = (ratio_to_float(v) for v in _values(time_tag)[:3])
        day = datetime.strptime(date.strip()[:10].replace("-", ":"), "%Y:%m:%d")
    except (TypeError, ValueError):
        return None
    if h is None or m is None or s is None or not (0 <= h < 24 and 0 <= m < 60 and 0 <= s < 61):
        return None
    whole = int(s)
    stamp = day.replace(hour=int(h), minute=int(m), second=min(whole, 59))
    return stamp.isoformat() + "Z"


def camera_from_tags(tags: Mapping[str, Any]) -> str | None:
    """``"Make Model"``, without repeating the make when the model already starts with it."""
    make = _text(tags.get("Image Make"))
    model = _text(tags.get("Image Model"))
    if make and model and model.lower().startswith(make.lower()):
        return model
    return " ".join(p for p in (make, model) if p) or None


def orientation_from_tags(tags: Mapping[str, Any]) -> int | None:
    """The EXIF orientation 1..8, or None when absent or invalid."""
    tag = tags.get("Image Orientation")
    if tag is None:
        return None
    try:
        value = int(_values(tag)[0])
    except (TypeError, ValueError, IndexError):
        return None
    return value if 1 <= value <= 8 else None
