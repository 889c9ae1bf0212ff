"""The records that flow through heritage: frozen dataclasses, standard library only.

``Photo`` (what a file says about itself) -> ``Prediction`` (what a model says) ->
``Observation`` (photo + predictions + explanation + priority + status). A bad photo
is data, not an exception: it becomes a ``SkippedFile`` (import) or an
``Observation`` with a status (classification) and the batch goes on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class SkipReason(StrEnum):
    """Why a file was not imported as a geotagged photo (``invalid_photos.reason``)."""

    NO_GPS = "no_gps"
    ZERO_COORDINATES = "zero_coordinates"
    CORRUPT_EXIF = "corrupt_exif"
    UNREADABLE_IMAGE = "unreadable_image"
    UNSUPPORTED_FORMAT = "unsupported_format"
    DUPLICATE = "duplicate"
    #: a folder of the photo folders that was not read (unreadable, symlink, hidden, output)
    SKIPPED_FOLDER = "skipped_folder"


@dataclass(frozen=True, slots=True)
class GeoPosition:
    """A WGS84 position; altitude in metres above sea level (negative below)."""

    lat: float
    lon: float
    alt: float | None = None


@dataclass(frozen=True, slots=True)
class Photo:
    """What a photo file says about itself (EXIF and pixels), before any model runs.

    ``path`` is absolute; exporters make it relative to their output. ``heading`` is
    the camera direction in degrees clockwise from north; ``taken_at`` is ISO 8601.
    """

    path: str
    sha256: str
    width: int | None = None
    height: int | None = None
    position: GeoPosition | None = None
    heading: float | None = None
    heading_source: str | None = None
    taken_at: str | None = None
    taken_at_source: str | None = None
    camera: str | None = None
    orientation: int | None = None
    file_format: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """A flat dict (position unpacked into lat/lon/alt)."""
        d = asdict(self)
        pos = d.pop("position")
        d["lat"] = pos["lat"] if pos else None
        d["lon"] = pos["lon"] if pos else None
        d["alt"] = pos["alt"] if pos else None
        return d


@dataclass(frozen=True, slots=True)
class SkippedFile:
    """A file found during a scan that did not become a geotagged photo."""

    path: str
    reason: SkipReason
    message: str
    sha256: str | None = None


@dataclass(frozen=True, slots=True)
class Prediction:
    """One model's answer for one image.

    ``label`` is the winning class name, ``score`` its probability, ``probabilities``
    every class' probability (class name -> probability).
    """

    label: str
    score: float
    probabilities: dict[str, float] = field(default_factory=dict)
