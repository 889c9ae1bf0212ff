"""A field package for QField: the survey, its photos and overlays, and a project file.

:func:`write_field_package` writes a folder to copy onto a tablet (QField opens the
``.qgz``; QFieldSync is not needed)::

    <out>/
      <survey>.qgz            project: styled survey layers, forms with image widgets
      <survey>.gpkg           a copy of the survey GeoPackage
      <survey>_overlays/      the thumbnails, Grad-CAM overlays and heat maps it refers to

Every path is relative: the layers' data sources (``./<survey>.gpkg|layername=...``,
QGIS' relative-path mode) and the image fields of ``observations``, which the form
shows with ExternalResource widgets set to "relative to the project path"
(``RelativeStorage`` 1), so the package works wherever it is copied. The image
fields are read-only in the form (they are the model's output). The original photos
are not copied (the thumbnails, at most 480 px, are what the field needs); the
``path`` field still names them relative to the office copy of the survey.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from qgis.core import QgsCoordinateReferenceSystem, QgsEditorWidgetSetup, QgsProject
from qgis.PyQt.QtCore import QCoreApplication

from .layers import IMAGE_FIELDS, existing_layers
from .results import load_survey

#: ExternalResource ``RelativeStorage``: 0 absolute, 1 relative to the project, 2 to DefaultRoot
RELATIVE_TO_PROJECT = 1


def tr(text: str) -> str:
    """Translate ``text`` (context "Heritage")."""
    return QCoreApplication.translate("Heritage", text)


def referenced_files(gpkg: Path) -> list[str]:
    """The image paths (relative to the GeoPackage's folder) that ``observations`` holds,
    those inside that folder only."""
    con = sqlite3.connect(f"file:{gpkg.as_posix()}?mode=ro", uri=True)
    try:
        have = {r[1] for r in con.execute('PRAGMA table_info("observations")')}
        cols = [c for c in IMAGE_FIELDS if c in have]
        rows = (
            con.execute(f'SELECT {", ".join(cols)} FROM "observations"').fetchall() if cols else []
        )
    finally:
        con.close()
    out = set()
    for row in rows:
        for rel in row:
            if rel and not Path(rel).is_absolute() and ".." not in Path(rel).parts:
                out.add(str(rel))
    return sorted(out)


def image_widget_config() -> dict:
    """ExternalResource configuration of an image field, relative to the project."""
    return {
        "DocumentViewer": 1,  # image
        "DocumentViewerHeight": 0,
        "DocumentViewerWidth": 320,
        "FileWidget": True,
        "FileWidgetButton": False,
        "RelativeStorage": RELATIVE_TO_PROJECT,
        "StorageMode": 0,  # files
        "UseLink": False,
        "FullUrl": False,
    }


def write_field_package(gpkg: str | Path, out_dir: str | Path) -> Path:
    """Write the field package of the survey ``gpkg`` into ``out_dir``; returns the
    project file. Raises ValueError for a GeoPackage that is not a classified survey or
    an output folder that is the survey's own folder."""
    gpkg, out_dir = Path(gpkg).resolve(), Path(out_dir).resolve()
    if "observations" not in existing_layers(gpkg):
        raise ValueError(tr("{0} is not a classified survey (no observations layer)").format(gpkg))
    if out_dir == gpkg.parent:
        raise ValueError(tr("Choose an output folder other than the survey's own folder."))
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / gpkg.name
    shutil.copy2(gpkg, target)
    missing = 0
    for rel in referenced_files(gpkg):
        src = gpkg.parent / rel
        if not src.is_file():
            missing += 1
            continue
        dest = out_dir / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest)

    project = QgsProject()
    qgz = out_dir / f"{gpkg.stem}.qgz"
    project.setFileName(str(qgz))
    project.setTitle(tr("Heritage survey {0} (field package)").format(gpkg.stem))
    project.writeEntryBool("Paths", "/Absolute", False)
    layers = load_survey(target, project, group_name=tr("Heritage survey: {0}").format(gpkg.stem))
    obs = layers.get("observations")
    if obs is not None:
        form = obs.editFormConfig()
        for name in IMAGE_FIELDS:
            idx = obs.fields().indexOf(name)
            if idx >= 0:
                form.setReadOnly(idx, True)
        obs.setEditFormConfig(form)
        for name in IMAGE_FIELDS:  # after setEditFormConfig, which resets the widgets
            idx = obs.fields().indexOf(name)
            if idx >= 0:
                obs.setEditorWidgetSetup(
                    idx, QgsEditorWidgetSetup("ExternalResource", image_widget_config())
                )
    project.setCrs(QgsCoordinateReferenceSystem("EPSG:3857"))
    if not project.write():
        raise OSError(tr("cannot write {0}: {1}").format(qgz, project.error()))
    if missing:
        from .common import log

        log(tr("field package: {0} image(s) of the survey were missing").format(missing))
    return qgz
