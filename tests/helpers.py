"""Small helpers that several test modules share: running the CLI in-process, its one
error line, a survey of one folder, reading a GeoPackage layer (``from helpers import ...``, like
``factories``)."""

from __future__ import annotations

import csv
import re
import sys
from pathlib import Path

from heritage.kernel.errors import CancelledError
from heritage.kernel.progress import NullProgress


def cli_line(capsys, *args: str) -> tuple[int, str]:
    """Run the console entry point in-process: (exit code, what it printed on stderr)."""
    from heritage.cli import main

    argv = sys.argv
    sys.argv = ["heritage", *args]
    code = 0
    try:
        main()
    except SystemExit as exited:
        code = int(exited.code or 0)
    finally:
        sys.argv = argv
    return code, capsys.readouterr().err


def one_error(err: str) -> str:
    """The one ``Error:`` line of a failed command's stderr (progress bars and click's
    usage lines may come before it); fails on a traceback or several errors."""
    assert "Traceback" not in err, err
    errors = [line for line in re.split(r"[\r\n]", err) if "Error: " in line]
    assert len(errors) == 1 and errors[0].startswith("Error: "), err
    assert err.rstrip("\n").endswith(errors[0]), err
    return errors[0]


def classify_folder(photo_dir: Path, out: Path, model_dir: Path, **kw) -> object:
    """``run_survey`` of one photo folder on the CPU; ``kw``: further ClassifyConfig fields."""
    from heritage.survey.pipeline import ClassifyConfig, run_survey

    cfg = ClassifyConfig((photo_dir,), out, model_dir=model_dir, device="cpu", **kw)
    return run_survey(cfg)


def read_layer(gpkg: Path, layer: str) -> list[dict]:
    """Every row of ``layer`` (attributes only) as dicts."""
    from pyogrio import raw

    from heritage.io.gpkg import read_rows

    meta = raw.read(str(gpkg), layer=layer, read_geometry=False)[0]
    return read_rows(gpkg, layer, list(meta["fields"]))


def csv_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV file with a header line."""
    return list(csv.DictReader(path.read_text().splitlines()))


class StopAt(NullProgress):
    """Raises ``exc`` at the ``at``-th single-batch step (a stand-in for Ctrl-C or a kill)."""

    def __init__(self, at: int, exc: type[BaseException] = CancelledError) -> None:
        super().__init__()
        self.at, self.exc, self.count = at, exc, 0

    def step(self, n: int = 1, **info) -> None:
        if n == 1 and not info.get("resumed"):
            self.count += 1
            if self.count == self.at:
                raise self.exc("stop here")
