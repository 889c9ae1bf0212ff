"""Classify a georeferenced raster (orthophoto) tile by tile: heritage classify-raster."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from qgis.core import (
    QgsProcessingOutputVectorLayer,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
)

from .alg_base import HeritageAlgorithm
from .alg_survey import DEVICES, GPKG_FILTER
from .params import check_folder, is_gpkg


class ClassifyRasterAlgorithm(HeritageAlgorithm):
    """heritage classify-raster ORTHO.tif -o DEFECTS.tif."""

    ALG_ID = "classifyraster"
    COMMAND = "classify-raster"
    GROUP_ID = "raster"
    GROUP = "Raster"
    DISPLAY = "Classify a raster (orthophoto)"
    HELP = (
        "Classifies a georeferenced raster of façades or roofs in overlapping tiles with the "
        "two-stage model. The result is a GeoTIFF with the same grid (or a coarser one): band 1 "
        "the defect probability, band 2 the Grad-CAM, nodata -1. Optionally the tiles at or "
        "above the model's threshold are also written as polygons (layer raster_defects)."
    )

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT", self.tr("Raster")))
        self.addParameter(
            QgsProcessingParameterFile(
                "MODEL",
                self.tr("Model folder (empty: the shipped model)"),
                behavior=QgsProcessingParameterFile.Behavior.Folder,
                optional=True,
            )
        )
        tile = QgsProcessingParameterNumber(
            "TILE_SIZE",
            self.tr("Tile size in raster pixels (empty: the model's input size)"),
            type=QgsProcessingParameterNumber.Type.Integer,
            optional=True,
            minValue=8,
        )
        self.addParameter(tile)
        self.addParameter(
            QgsProcessingParameterNumber(
                "SCALE",
                self.tr("Write the result this many times coarser"),
                type=QgsProcessingParameterNumber.Type.Integer,
                defaultValue=1,
                minValue=1,
            )
        )
        device = QgsProcessingParameterEnum(
            "DEVICE", self.tr("Device"), options=list(DEVICES), defaultValue=0
        )
        device.setFlags(device.flags() | QgsProcessingParameterDefinition.Flag.FlagAdvanced)
        self.addParameter(device)
        self.addParameter(
            QgsProcessingParameterRasterDestination("OUTPUT", self.tr("Defect probability"))
        )
        self.addParameter(
            QgsProcessingParameterFileDestination(
                "OUTPUT_VECTOR",
                self.tr("Defect tiles as polygons"),
                GPKG_FILTER,
                optional=True,
                createByDefault=False,
            )
        )
        self.addOutput(QgsProcessingOutputVectorLayer("DEFECT_TILES", self.tr("Defect tiles")))

    def _raster_path(self, parameters: dict[str, Any], context) -> str:
        layer = self.parameterAsRasterLayer(parameters, "INPUT", context)
        if layer is None:
            return ""
        path = layer.source().split("|")[0]
        return path if os.path.isfile(path) else ""

    def check_values(self, parameters, context):
        problems = []
        layer = self.parameterAsRasterLayer(parameters, "INPUT", context)
        if layer is None or not layer.isValid():
            problems.append(self.tr("Raster cannot be opened: {0}").format(parameters.get("INPUT")))
        elif not self._raster_path(parameters, context):
            problems.append(
                self.tr("Raster {0} is not a file (GeoTIFF...): save it to a file first.").format(
                    layer.name()
                )
            )
        model = self.parameterAsFile(parameters, "MODEL", context)
        if model:
            msg = check_folder(model, self.tr("Model folder"))
            if msg:
                problems.append(msg)
        out = self.parameterAsOutputLayer(parameters, "OUTPUT", context)
        if out and Path(out).suffix.lower() not in (".tif", ".tiff"):
            problems.append(
                self.tr("Output must be a GeoTIFF (.tif), not {0!r}.").format(Path(out).name)
            )
        vec = self.parameterAsFileOutput(parameters, "OUTPUT_VECTOR", context)
        if vec and not is_gpkg(vec):
            problems.append(
                self.tr("Defect polygons must go to a GeoPackage (.gpkg), not {0!r}.").format(
                    Path(vec).name
                )
            )
        return problems

    def build_args(self, parameters, context):
        out = self.parameterAsOutputLayer(parameters, "OUTPUT", context)
        args = ["classify-raster", self._raster_path(parameters, context), "-o", out]
        model = self.parameterAsFile(parameters, "MODEL", context)
        if model:
            args += ["--model", model]
        if parameters.get("TILE_SIZE") not in (None, ""):
            args += ["--tile-size", str(self.parameterAsInt(parameters, "TILE_SIZE", context))]
        args += ["--scale", str(self.parameterAsInt(parameters, "SCALE", context))]
        args += ["--device", DEVICES[self.parameterAsEnum(parameters, "DEVICE", context)]]
        vec = self.parameterAsFileOutput(parameters, "OUTPUT_VECTOR", context)
        if vec:
            args += ["--vector", vec]
        return [*args, "--json-progress"]

    def processAlgorithm(self, parameters, context, feedback):
        out = self.parameterAsOutputLayer(parameters, "OUTPUT", context)
        self.run_backend(self.build_args(parameters, context), feedback)
        results: dict[str, Any] = {"OUTPUT": out}
        vec = self.parameterAsFileOutput(parameters, "OUTPUT_VECTOR", context)
        if vec and os.path.isfile(vec):
            results["OUTPUT_VECTOR"] = vec
            results["DEFECT_TILES"] = self.load_on_completion(
                context, vec, "raster_defects", self.tr("Defect tiles"), "DEFECT_TILES"
            )
        return results
