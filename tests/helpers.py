"""Small helpers that several test modules share: running the CLI in-process, its one
error line, surveys built the same way in several modules, reading a GeoPackage layer, a
listener of the plugin's backend runner (``from helpers import ...``, like ``factories``)."""

from __future__ import annotations

import contextlib
import csv
import re
import shutil
import sys
import zipfile
from collections.abc import Iterator
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


#: the review tests' survey (exif-gps/gps): three photos in Arezzo, one in Madrid ...
REVIEW_PHOTOS = ("DSCN0010.jpg", "DSCN0012.jpg", "DSCN0025.jpg", "iphone_hdr_NO.jpg")
#: ... and Helsinki's, marked as not flagged: a defect the model missed
HELSINKI = "HMD_Nokia_8.3_5G.jpg"


def review_survey(folder: Path, exif_gps: Path, model_dir: Path) -> Path:
    """``folder/survey.gpkg``: the five review photos (copied to ``folder/photos``)
    classified by ``model_dir`` (a model that flags every photo), then Helsinki's photo
    marked as not flagged and the survey re-grouped; returns the GeoPackage."""
    from heritage.survey.pipeline import ClassifyConfig, regroup_survey, run_survey

    photos = folder / "photos"
    photos.mkdir()
    for name in (*REVIEW_PHOTOS, HELSINKI):
        shutil.copy(exif_gps / "gps" / name, photos / name)
    out = folder / "survey.gpkg"
    run_survey(ClassifyConfig((photos,), out, model_dir=model_dir, device="cpu"))
    mark_not_flagged(out, HELSINKI)
    regroup_survey(out, threshold=0.0)
    return out


def mark_not_flagged(survey: Path, file_name: str | None = None) -> None:
    """Set the photo ``file_name`` of a survey GeoPackage (every photo when ``None``) to
    not flagged, as if the model had not flagged it; re-group the survey afterwards."""
    from heritage.io.gpkg import connect_gpkg

    sql = "UPDATE observations SET flagged = 0, decision = 'not_flagged'"
    con = connect_gpkg(survey)
    with con:
        if file_name is None:
            con.execute(sql)
        else:
            con.execute(f"{sql} WHERE file_name = ?", (file_name,))
    con.close()


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Torch on one thread inside the block (the test machine's 2 cores are shared: one
    thread is several times faster there); the ``one_torch_thread`` fixture wraps it."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def arezzo_survey(root: Path, out: Path, exif_gps: Path, model_dir: Path) -> Path:
    """The 9 Arezzo photos (exif-gps/gps/DSCN*.jpg, copied to ``root/photos``) classified
    into ``out`` by ``model_dir``, a model that flags every photo: at least two buildings
    and a route; returns ``out``."""
    from heritage.survey.pipeline import ClassifyConfig, run_survey

    photos = root / "photos"
    photos.mkdir()
    for f in sorted((exif_gps / "gps").glob("DSCN*.jpg")):
        shutil.copy(f, photos / f.name)
    with one_torch_thread():
        summary = run_survey(ClassifyConfig((photos,), out, model_dir=model_dir))
    assert summary.classified == 9 and summary.buildings >= 2
    return out


@contextlib.contextmanager
def heritage_provider() -> Iterator[object]:
    """The plugin's Processing provider inside the block: the one registered already, or
    a new one registered for the block and removed after it (QGIS tests' ``provider``
    fixtures)."""
    from qgis.core import QgsApplication

    from heritage_qgis.provider import HeritageProvider

    registry = QgsApplication.processingRegistry()
    prov = registry.providerById("heritage")
    if prov is not None:
        yield prov
        return
    prov = HeritageProvider()
    registry.addProvider(prov)
    yield prov
    registry.removeProvider(prov)


@contextlib.contextmanager
def plugin_profile(plugin_zip: Path, plugins_dir: Path, iface: object) -> Iterator[Path]:
    """The plugin's zip extracted into ``plugins_dir`` (a fresh profile's plugin folder),
    the only folder QGIS looks for plugins in inside the block; this process's copy of
    ``heritage_qgis`` is set aside meanwhile, so loading the plugin loads the installed
    one. Everything is put back after the block; yields ``plugins_dir``."""
    import qgis.utils

    plugin = "heritage_qgis"
    plugins_dir.mkdir(parents=True)
    with zipfile.ZipFile(plugin_zip) as zf:
        zf.extractall(plugins_dir)
    saved_modules = {k: v for k, v in sys.modules.items() if k.split(".")[0] == plugin}
    for k in saved_modules:
        del sys.modules[k]
    saved = (list(qgis.utils.plugin_paths), list(qgis.utils.available_plugins), list(sys.path))
    qgis.utils.iface = iface
    try:
        sys.path.insert(0, str(plugins_dir))
        qgis.utils.plugin_paths[:] = [str(plugins_dir)]
        qgis.utils.updateAvailablePlugins()
        yield plugins_dir
    finally:
        for k in [k for k in sys.modules if k.split(".")[0] == plugin]:
            del sys.modules[k]
        sys.modules.update(saved_modules)
        qgis.utils.plugin_paths[:] = saved[0]
        qgis.utils.available_plugins[:] = saved[1]
        sys.path[:] = saved[2]


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


class Recorder:
    """A listener of the plugin's backend runner and installer that keeps every call, as
    the plugin's task and Processing feedback receive them; it cancels once a percentage
    reaches ``cancel_at``. It has no ``status`` (optional in the protocol): see
    :class:`StatusRecorder`."""

    def __init__(self, cancel_at: float | None = None) -> None:
        self.percents: list[float] = []
        self.stages: list[str] = []
        self.messages: list[str] = []
        self.logs: list[str] = []
        self.cancel_at = cancel_at

    def progress(self, percent: float) -> None:
        self.percents.append(percent)

    def stage(self, text: str) -> None:
        self.stages.append(text)

    def message(self, text: str) -> None:
        self.messages.append(text)

    def log(self, text: str) -> None:
        self.logs.append(text)

    def is_canceled(self) -> bool:
        return self.cancel_at is not None and any(p >= self.cancel_at for p in self.percents)


class StatusRecorder(Recorder):
    """A :class:`Recorder` that also keeps the one-line states (``status``) a status
    label shows."""

    def __init__(self, cancel_at: float | None = None) -> None:
        super().__init__(cancel_at)
        self.statuses: list[str] = []

    def status(self, text: str) -> None:
        self.statuses.append(text)
