"""Inspection outputs: the report (backend ``heritage report``), the print-layout atlas
and the QField package.

The atlas and the package run in QGIS itself (no backend): they change the project or
write one, so they run on the main thread (``FlagNoThreading``).
"""

from __future__ import annotations

from pathlib import Path

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingOutputFile,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterFolderDestination,
    QgsProject,
)

from .alg_base import HeritageAlgorithm
from .params import is_gpkg


def check_survey(alg: HeritageAlgorithm, parameters, context) -> list[str]:
    """Problems with ``alg``'s SURVEY parameter: missing, or not a classified survey."""
    from .layers import existing_layers

    path = alg.parameterAsFile(parameters, "SURVEY", context)
    if not path or not Path(path).is_file():
        return [alg.tr("The survey GeoPackage {0} does not exist.").format(path)]
    if not is_gpkg(path) or "observations" not in existing_layers(path):
        return [
            alg.tr("{0} is not a classified survey: run 'Classify a photo survey' first.").format(
                path
            )
        ]
    return []


class _InQgisAlgorithm(HeritageAlgorithm):
    """A Heritage algorithm that needs no backend and runs on the main thread."""

    GROUP_ID = "inspection"
    GROUP = "Inspection"

    def flags(self):
        return super().flags() | QgsProcessingAlgorithm.FlagNoThreading

    def check_backend(self) -> str | None:
        return None

    def _survey_param(self) -> QgsProcessingParameterFile:
        return QgsProcessingParameterFile(
            "SURVEY", self.tr("Survey GeoPackage (from 'Classify a photo survey')"),
            extension="gpkg",
        )  # fmt: skip


class CreateAtlasAlgorithm(_InQgisAlgorithm):
    """A print layout with an atlas over the flagged buildings, exported to PDF."""

    ALG_ID = "inspectionatlas"
    DISPLAY = "Create inspection atlas"
    HELP = (
        "Builds a print layout named 'Heritage inspection atlas: <survey>' with an atlas over "
        "the flagged buildings in visiting order: one A4 page per building with its map, an "
        "overview map of the round, and its three strongest flagged photos with their "
        "Grad-CAM overlays. The layout is saved in the project (Project > Layouts) so that "
        "you can adjust it, and exported to PDF with QGIS' layout exporter. The survey "
        "layers are added to the project when it does not hold them yet."
    )

    def initAlgorithm(self, config=None):
        self.addParameter(self._survey_param())
        self.addParameter(
            QgsProcessingParameterFileDestination("OUTPUT", self.tr("Atlas PDF"), "PDF (*.pdf)")
        )
        self.addOutput(QgsProcessingOutputNumber("PAGES", self.tr("Pages")))
        self.addOutput(QgsProcessingOutputString("LAYOUT", self.tr("Layout name")))

    def check_values(self, parameters, context):
        return check_survey(self, parameters, context)

    def processAlgorithm(self, parameters, context, feedback):
        from .atlas import create_inspection_atlas

        gpkg = self.parameterAsFile(parameters, "SURVEY", context)
        pdf = self.parameterAsFileOutput(parameters, "OUTPUT", context)
        project = context.project() or QgsProject.instance()
        feedback.setProgressText(self.tr("Building the layout and exporting its pages"))
        try:
            layout, pages = create_inspection_atlas(project, gpkg, pdf)
        except (ValueError, RuntimeError) as exc:
            raise QgsProcessingException(str(exc)) from exc
        feedback.pushInfo(
            self.tr("{0} page(s) in {1}; layout '{2}' saved in the project").format(
                pages, pdf, layout.name()
            )
        )
        return {"OUTPUT": pdf, "PAGES": pages, "LAYOUT": layout.name()}


class FieldPackageAlgorithm(_InQgisAlgorithm):
    """The survey as a QField package: GeoPackage, images and a .qgz with photo forms."""

    ALG_ID = "fieldpackage"
    DISPLAY = "Create field package (QField)"
    HELP = (
        "Writes a folder to copy onto a tablet: a copy of the survey GeoPackage, the photo "
        "thumbnails and Grad-CAM overlays it refers to, and a QGIS project (.qgz) with the "
        "styled survey layers whose form shows the photo and its overlay. Every path is "
        "relative to the project, so QField opens the folder wherever it is copied."
    )

    def initAlgorithm(self, config=None):
        self.addParameter(self._survey_param())
        self.addParameter(
            QgsProcessingParameterFolderDestination("OUTPUT", self.tr("Field package folder"))
        )
        self.addOutput(QgsProcessingOutputFile("PROJECT", self.tr("Project file")))

    def check_values(self, parameters, context):
        problems = check_survey(self, parameters, context)
        out = self.parameterAsFileOutput(parameters, "OUTPUT", context)
        gpkg = self.parameterAsFile(parameters, "SURVEY", context)
        if not problems and out and Path(out).resolve() == Path(gpkg).resolve().parent:
            problems.append(self.tr("Choose an output folder other than the survey's own."))
        return problems

    def processAlgorithm(self, parameters, context, feedback):
        from .fieldpkg import write_field_package

        gpkg = self.parameterAsFile(parameters, "SURVEY", context)
        out = self.parameterAsFileOutput(parameters, "OUTPUT", context)
        try:
            qgz = write_field_package(gpkg, out)
        except (ValueError, OSError) as exc:
            raise QgsProcessingException(str(exc)) from exc
        feedback.pushInfo(self.tr("Field package written: {0}").format(qgz))
        return {"OUTPUT": out, "PROJECT": str(qgz)}


class WriteReportAlgorithm(HeritageAlgorithm):
    """heritage report: the survey's inspection report (HTML, optional PDF and CSV)."""

    ALG_ID = "inspectionreport"
    COMMAND = "report"
    GROUP_ID = "inspection"
    GROUP = "Inspection"
    DISPLAY = "Write inspection report (HTML, PDF)"
    HELP = (
        "Writes the inspection report of a classified survey for site managers who do not "
        "use QGIS: the survey in figures, a map of the round, then one section per flagged "
        "building in visiting order with its priority, the terms of its score, and its "
        "photos beside their Grad-CAM overlays. HTML with its images in a folder beside it, "
        "optionally a PDF (A4) and a CSV of the buildings table. A survey without flagged "
        "buildings gets a report that says so."
    )

    def initAlgorithm(self, config=None):
        self.addParameter(
            QgsProcessingParameterFile("SURVEY", self.tr("Survey GeoPackage"), extension="gpkg")
        )
        self.addParameter(
            QgsProcessingParameterFileDestination(
                "OUTPUT", self.tr("Report (HTML)"), "HTML (*.html)"
            )
        )
        self.addParameter(
            QgsProcessingParameterFileDestination(
                "PDF", self.tr("Report (PDF)"), "PDF (*.pdf)", optional=True,
                createByDefault=False,
            )
        )  # fmt: skip
        self.addParameter(
            QgsProcessingParameterBoolean(
                "CSV", self.tr("Also the buildings table as CSV beside the HTML"), False
            )
        )
        self.addOutput(QgsProcessingOutputNumber("BUILDINGS", self.tr("Buildings in the report")))
        self.addOutput(QgsProcessingOutputNumber("PAGES", self.tr("PDF pages")))

    def check_values(self, parameters, context):
        problems = check_survey(self, parameters, context)
        out = self.parameterAsFileOutput(parameters, "OUTPUT", context)
        if not out.lower().endswith((".html", ".htm")):
            problems.append(self.tr("The report must be an .html file."))
        return problems

    def build_args(self, parameters, context):
        gpkg = self.parameterAsFile(parameters, "SURVEY", context)
        out = self.parameterAsFileOutput(parameters, "OUTPUT", context)
        args = ["report", gpkg, "-o", out]
        pdf = self.parameterAsFileOutput(parameters, "PDF", context)
        if pdf:
            args += ["--pdf", pdf]
        if self.parameterAsBoolean(parameters, "CSV", context):
            args.append("--csv")
        return [*args, "--json-progress"]

    def processAlgorithm(self, parameters, context, feedback):
        result = self.run_backend(self.build_args(parameters, context), feedback)
        summary = result.summary or {}
        return {
            "OUTPUT": self.parameterAsFileOutput(parameters, "OUTPUT", context),
            "PDF": summary.get("pdf"),
            "BUILDINGS": summary.get("buildings"),
            "PAGES": summary.get("pdf_pages"),
        }
