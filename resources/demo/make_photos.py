"""Rebuild resources/demo/photos/ from ../shared/data (run once; the result is committed).

- copies the nine Arezzo photos ``exif-gps/gps/DSCN*.jpg`` unchanged (real camera GPS);
- writes the Dais et al. (2021) crack patches listed in ``positions.csv`` as PNG with an
  EXIF block (PNG ``eXIf`` chunk, which exifread reads) holding the invented demo
  position, heading and time from that file, plus attribution. Pixels are unchanged.

Usage: ``.venv/bin/python resources/demo/make_photos.py [SHARED_DATA]``
"""

from __future__ import annotations

import csv
import shutil
import sys
from fractions import Fraction
from pathlib import Path

from PIL import Image
from PIL.TiffImagePlugin import IFDRational

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
ATTRIBUTION = (
    "Dais, Bal, Smyrou & Sarhosis (2021), Automation in Construction 125:103606, "
    "github.com/dimitrisdais/crack_detection_CNN_masonry, GPL-3.0"
)


def _dms(value: float) -> tuple[IFDRational, IFDRational, IFDRational]:
    value = abs(value)
    degrees = int(value)
    minutes = int((value - degrees) * 60)
    seconds = Fraction(round((value - degrees - minutes / 60) * 3600 * 10_000), 10_000)
    return (
        IFDRational(degrees, 1),
        IFDRational(minutes, 1),
        IFDRational(seconds.numerator, seconds.denominator),
    )


def write_demo_png(src: Path, dst: Path, row: dict[str, str]) -> None:
    """Copy ``src`` to ``dst`` (PNG) with the demo GPS position of ``row`` in its EXIF."""
    lat, lon = float(row["latitude"]), float(row["longitude"])
    exif = Image.Exif()
    exif[0x010E] = f"Masonry crack patch {row['source_file']} (demo position, invented)"
    exif[0x013B] = "Dais et al. 2021"
    exif[0x8298] = ATTRIBUTION
    exif[0x0131] = "heritage resources/demo/make_photos.py"
    exif[0x8769] = {0x9003: row["taken_at"].replace("-", ":"), 0x9011: "+02:00"}
    exif[0x8825] = {
        0: b"\x02\x03\x00\x00",
        1: "N" if lat >= 0 else "S",
        2: _dms(lat),
        3: "E" if lon >= 0 else "W",
        4: _dms(lon),
        16: "T",
        17: IFDRational(int(row["heading_deg"]), 1),
    }
    with Image.open(src) as im:
        im.load()
        im.save(dst, format="PNG", exif=exif, optimize=True)


def main(shared: Path) -> None:
    out = HERE / "photos"
    out.mkdir(exist_ok=True)
    for jpg in sorted((shared / "exif-gps" / "gps").glob("DSCN*.jpg")):
        shutil.copy2(jpg, out / jpg.name)
    with (HERE / "positions.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            write_demo_png(shared / "dais-masonry" / row["source_file"], out / row["file"], row)
    print(f"demo photos written to {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "data")
