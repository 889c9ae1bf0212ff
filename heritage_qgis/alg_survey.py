"""Survey algorithms: import photos, classify a survey, group per building, plan a route."""

from __future__ import annotations

from typing import Any

from qgis.core import (
    QgsProcessing,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingOutputVectorLayer,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterPoint,
    QgsProcessingParameterVectorLayer,
)

from .alg_base import HeritageAlgorithm
from .params import (
    check_folder,
    check_gpkg_output,
    format_lon_lat,
    is_gpkg,
    start_value_to_lon_lat,
    vector_file,
)

GPKG_FILTER = "GeoPackage (*.gpkg *.GPKG)"
#: "" = the model's own; the others are heritage.model.explain.CAM_METHODS (a test keeps them
#: equal), new ones appended so that saved Processing parameters keep their meaning
CAM_METHODS = ("", "gradcam", "gradcam++", "eigencam", "layercam", "xgradcam", "hirescam")
DEVICES = ("auto", "cpu", "cuda")
#: heritage classify --mode choices, in the order of the MODE enum
MODES = ("scene", "whole", "tiles")
#: survey layer -> Processing output name
SURVEY_OUTPUTS = {
    "observations": "OBSERVATIONS",
    "flagged_buildings": "FLAGGED_BUILDINGS",
    "inspection_route": "INSPECTION_ROUTE",
    "invalid_photos": "INVALID_PHOTOS",
}


def _advanced(param: QgsProcessingParameterDefinition) -> QgsProcessingParameterDefinition:
    param.setFlags(param.flags() | QgsProcessingParameterDefinition.Flag.FlagAdvanced)
    return param


def _folder_param(
    name: str, description: str, optional: bool = False
) -> QgsProcessingParameterFile:
    return QgsProcessingParameterFile(
        name,
        description,
        behavior=QgsProcessingParameterFile.Behavior.Folder,
        optional=optional,
    )


class _SurveyAlgorithm(HeritageAlgorithm):
    """Shared parameter checks of the survey algorithms."""

    def _check_start(self, parameters: dict[str, Any], problems: list[str]) -> None:
        try:
            start_value_to_lon_lat(parameters.get("START"))
        except ValueError as exc:
            problems.append(str(exc))

    def _start_args(self, parameters: dict[str, Any]) -> list[str]:
        lon_lat = start_value_to_lon_lat(parameters.get("START"))
        return ["--start", format_lon_lat(*lon_lat)] if lon_lat else []

    def _vector_args(
        self, option: str, name: str, parameters: dict[str, Any], context: QgsProcessingContext
    ) -> list[str]:
        if not parameters.get(name):
            return []
        layer = self.parameterAsVectorLayer(parameters, name, context)
        if layer is None or not layer.isValid():
            raise QgsProcessingException(
                self.tr("{0}: cannot open {1}").format(name, parameters.get(name))
            )
        return [option, vector_file(layer, context)]

    def _check_vector(
        self, name: str, what: str, parameters: dict[str, Any], context, problems: list[str]
    ) -> None:
        if not parameters.get(name):
            return
        layer = self.parameterAsVectorLayer(parameters, name, context)
        if layer is None or not layer.isValid():
            problems.append(
                self.tr("{what} cannot be opened: {value}").format(
                    what=what, value=parameters.get(name)
                )
            )

    def _check_survey_input(self, parameters: dict[str, Any], context, problems: list[str]) -> None:
        path = self.parameterAsFile(parameters, "INPUT", context)
        if not path:
            problems.append(self.tr("Survey GeoPackage: no file given."))
        elif not is_gpkg(path):
            problems.append(self.tr("Survey must be a GeoPackage (.gpkg): {0}").format(path))
        else:
            import os

            if not os.path.isfile(path):
                problems.append(self.tr("Survey GeoPackage not found: {0}").format(path))

    def _add_layer_outputs(self, names: tuple[str, ...]) -> None:
        labels = {
            "observations": self.tr("Observations"),
            "flagged_buildings": self.tr("Flagged buildings"),
            "inspection_route": self.tr("Inspection route"),
            "invalid_photos": self.tr("Skipped photos"),
            "photos": self.tr("Photos"),
        }
        for layer in names:
            out = SURVEY_OUTPUTS.get(layer, layer.upper())
            self.addOutput(QgsProcessingOutputVectorLayer(out, labels[layer]))

    def _layer_results(
        self,
        context: QgsProcessingContext,
        gpkg: str,
        names: tuple[str, ...],
    ) -> dict[str, str]:
        from .alg_base import load_after_cancel
        from .layers import display_names, existing_layers
        from .results import layer_uri

        present = existing_layers(gpkg)
        shown = display_names(gpkg)
        results: dict[str, str] = {}
        kept = [layer for layer in names if layer in present]
        for layer in kept:
            out = SURVEY_OUTPUTS.get(layer, layer.upper())
            if self.cancelled:  # Processing loads nothing after a cancel: load them here
                results[out] = layer_uri(gpkg, layer)
            else:
                results[out] = self.load_on_completion(context, gpkg, layer, shown[layer], out)
        if self.cancelled and kept:
            load_after_cancel(gpkg, kept)
        return results

    def kept_text(self, result) -> str:
        summary = result.summary or {}
        if not summary:
            return super().kept_text(result)
        return self.tr(
            "Kept: {n} photo(s) classified in this run ({total} in the GeoPackage), "
            "{b} building(s) to inspect and their route; the partial layers are loaded. "
            "Run again with the same output to classify the rest."
        ).format(
            n=summary.get("classified", 0),
            total=summary.get("observations_total", 0),
            b=summary.get("buildings", 0),
        )


class ImportPhotosAlgorithm(_SurveyAlgorithm):
    """heritage photos: geotagged photos -> GeoPackage points."""

    ALG_ID = "importphotos"
    COMMAND = "photos"
    DISPLAY = "Import geotagged photos"
    HELP = (
        "Reads the GPS position, altitude, heading and time of every photo in the folder "
        "(recursively; JPEG, PNG, TIFF, HEIC) into the point layer 'photos' of a GeoPackage. "
        "Photos without a usable position are listed with their reason in the table "
        "'invalid_photos'. Running again on the same GeoPackage adds only new photos."
    )

    def initAlgorithm(self, config=None):
        self.addParameter(_folder_param("INPUT", self.tr("Photo folder")))
        self.addParameter(
            _advanced(
                QgsProcessingParameterNumber(
                    "MAX_MEGAPIXELS",
                    self.tr("Refuse images larger than (megapixels)"),
                    type=QgsProcessingParameterNumber.Type.Double,
                    optional=True,
                    minValue=0.001,
                )
            )
        )
        self.addParameter(
            QgsProcessingParameterFileDestination(
                "OUTPUT", self.tr("Photos GeoPackage"), GPKG_FILTER
            )
        )
        self._add_layer_outputs(("photos", "invalid_photos"))
        self.addOutput(QgsProcessingOutputNumber("IMPORTED", self.tr("Photos imported")))
        self.addOutput(QgsProcessingOutputNumber("SKIPPED", self.tr("Files skipped")))

    def check_values(self, parameters, context):
        problems = []
        msg = check_folder(
            self.parameterAsFile(parameters, "INPUT", context), self.tr("Photo folder")
        )
        if msg:
            problems.append(msg)
        msg = check_gpkg_output(self.parameterAsFileOutput(parameters, "OUTPUT", context))
        if msg:
            problems.append(msg)
        return problems

    def build_args(self, parameters, context):
        out = self.parameterAsFileOutput(parameters, "OUTPUT", context)
        args = ["photos", self.parameterAsFile(parameters, "INPUT", context), "-o", out]
        if parameters.get("MAX_MEGAPIXELS") not in (None, ""):
            mp = self.parameterAsDouble(parameters, "MAX_MEGAPIXELS", context)
            args += ["--max-megapixels", repr(mp)]
        return [*args, "--json-progress"]

    def processAlgorithm(self, parameters, context, feedback):
        out = self.parameterAsFileOutput(parameters, "OUTPUT", context)
        result = self.run_backend(self.build_args(parameters, context), feedback)
        summary = result.summary or {}
        results: dict[str, Any] = {"OUTPUT": out}
        results |= self._layer_results(context, out, ("photos", "invalid_photos"))
        results["IMPORTED"] = summary.get("imported")
        results["SKIPPED"] = summary.get("skipped_total", summary.get("skipped"))
        return results


class ClassifySurveyAlgorithm(_SurveyAlgorithm):
    """heritage classify: photos -> observations, flagged buildings, route."""

    ALG_ID = "classifysurvey"
    COMMAND = "classify"
    DISPLAY = "Classify a photo survey"
    HELP = (
        "Classifies every photo in the folder with the two-stage model (stage-1 CNN, "
        "Grad-CAM, stage 2 on the Grad-CAM overlay) and writes a GeoPackage with the layers "
        "'observations' (one point per photo: scores, priority category, model version, "
        "paths of the thumbnail and the Grad-CAM overlay), 'flagged_buildings' (grouped by the "
        "footprints if given, else by clustering), 'inspection_route' (from the start point "
        "or the highest-priority building) and 'invalid_photos' (files that were skipped and "
        "why). The layers open styled; click a point to see its photo next to the overlay. "
        "Running again on the same GeoPackage adds only new photos. Start point: lon,lat in "
        "WGS84 degrees or a point picked on the map. By default each photo is judged in "
        "tiles at the scale of the training patches; tiles of sky, trees, cars, people or "
        "glass cannot raise a flag, and a photo without any wall surface in view is marked "
        "'not assessable' (hollow square). The model is a first-pass triage: it "
        "misses some cracks, most of all hairline cracks and cracks on clean, modern-looking "
        "walls, and raises false alarms on photos that do not frame a wall. Review every "
        "flag, and do not read an unflagged photo of a well-kept facade as 'no crack'."
    )

    def initAlgorithm(self, config=None):
        self.addParameter(_folder_param("INPUT", self.tr("Photo folder")))
        self.addParameter(
            QgsProcessingParameterVectorLayer(
                "FOOTPRINTS",
                self.tr("Building footprints"),
                [QgsProcessing.SourceType.TypeVectorPolygon],
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterPoint(
                "START", self.tr("Route start (lon,lat or picked on the map)"), optional=True
            )
        )
        self.addParameter(
            _folder_param("MODEL", self.tr("Model folder (empty: the shipped model)"), True)
        )
        self.addParameter(
            QgsProcessingParameterBoolean(
                "BY_PRIORITY", self.tr("Visit category A first, then B..."), defaultValue=False
            )
        )
        self.addParameter(
            _advanced(
                QgsProcessingParameterEnum(
                    "MODE",
                    self.tr("How each photo is looked at"),
                    options=[
                        self.tr("Scene: whole photo in wall-checked tiles (survey photos)"),
                        self.tr("Whole image: centre crop (close-ups only)"),
                        self.tr("Full-resolution tiles, no wall check (slow)"),
                    ],
                    defaultValue=0,
                )
            )
        )
        self.addParameter(
            _advanced(
                QgsProcessingParameterEnum(
                    "CAM_METHOD",
                    self.tr("Grad-CAM method"),
                    options=[self.tr("the model's"), *CAM_METHODS[1:]],
                    defaultValue=0,
                )
            )
        )
        self.addParameter(
            _advanced(
                QgsProcessingParameterEnum(
                    "DEVICE", self.tr("Device"), options=list(DEVICES), defaultValue=0
                )
            )
        )
        self.addParameter(
            _advanced(
                QgsProcessingParameterVectorLayer(
                    "NETWORK",
                    self.tr("Streets/paths to route along"),
                    [QgsProcessing.SourceType.TypeVectorLine],
                    optional=True,
                )
            )
        )
        self.addParameter(
            QgsProcessingParameterFileDestination(
                "OUTPUT", self.tr("Survey GeoPackage"), GPKG_FILTER
            )
        )
        self._add_layer_outputs(tuple(SURVEY_OUTPUTS))
        for name, label in (
            ("CLASSIFIED", "Photos classified"),
            ("FLAGGED", "Photos flagged"),
            ("NOT_ASSESSABLE", "Photos not assessable (no wall in view)"),
            ("SKIPPED", "Files skipped"),
            ("BUILDINGS", "Buildings to inspect"),
            ("ROUTE_M", "Route length (m)"),
        ):
            self.addOutput(QgsProcessingOutputNumber(name, self.tr(label)))

    def check_values(self, parameters, context):
        problems = []
        msg = check_folder(
            self.parameterAsFile(parameters, "INPUT", context), self.tr("Photo folder")
        )
        if msg:
            problems.append(msg)
        model = self.parameterAsFile(parameters, "MODEL", context)
        if model:
            msg = check_folder(model, self.tr("Model folder"))
            if msg:
                problems.append(msg)
            else:
                import os

                if not os.path.isfile(os.path.join(model, "model.json")):
                    problems.append(
                        self.tr(
                            "Model folder {0} has no model.json (train one with 'Train a "
                            "model from folders')."
                        ).format(model)
                    )
        self._check_vector(
            "FOOTPRINTS", self.tr("Building footprints"), parameters, context, problems
        )
        self._check_vector("NETWORK", self.tr("Street network"), parameters, context, problems)
        self._check_start(parameters, problems)
        msg = check_gpkg_output(self.parameterAsFileOutput(parameters, "OUTPUT", context))
        if msg:
            problems.append(msg)
        return problems

    def build_args(self, parameters, context):
        out = self.parameterAsFileOutput(parameters, "OUTPUT", context)
        args = ["classify", self.parameterAsFile(parameters, "INPUT", context), "-o", out]
        model = self.parameterAsFile(parameters, "MODEL", context)
        if model:
            args += ["--model", model]
        args += self._vector_args("--footprints", "FOOTPRINTS", parameters, context)
        args += self._vector_args("--network", "NETWORK", parameters, context)
        args += self._start_args(parameters)
        if self.parameterAsBoolean(parameters, "BY_PRIORITY", context):
            args.append("--by-priority")
        mode = self.parameterAsEnum(parameters, "MODE", context)
        if mode:
            args += ["--mode", MODES[mode]]
        cam = self.parameterAsEnum(parameters, "CAM_METHOD", context)
        if cam:
            args += ["--cam-method", CAM_METHODS[cam]]
        args += ["--device", DEVICES[self.parameterAsEnum(parameters, "DEVICE", context)]]
        return [*args, "--json-progress"]

    def processAlgorithm(self, parameters, context, feedback):
        out = self.parameterAsFileOutput(parameters, "OUTPUT", context)
        result = self.run_backend(self.build_args(parameters, context), feedback)
        summary = result.summary or {}
        for line in summary_lines(summary):
            feedback.pushInfo(line)
        results: dict[str, Any] = {"OUTPUT": out}
        results |= self._layer_results(context, out, tuple(SURVEY_OUTPUTS))
        results["CLASSIFIED"] = summary.get("classified")
        results["FLAGGED"] = summary.get("flagged")
        results["NOT_ASSESSABLE"] = summary.get("not_assessable")
        results["SKIPPED"] = summary.get("skipped_total")
        results["BUILDINGS"] = summary.get("buildings")
        results["ROUTE_M"] = summary.get("route_m")
        return results


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """The backend's summary of a run as lines for the log: its own ``lines`` (the text
    ``heritage classify`` prints in a terminal); a backend older than that sends none,
    and only its counts are shown."""
    if not summary:
        return []
    if lines := summary.get("lines"):
        return [str(line) for line in lines]
    return [
        f"classified {summary.get('classified', 0)} photo(s), {summary.get('flagged', 0)} "
        f"flagged; {summary.get('buildings', 0)} building(s) to inspect, route "
        f"{float(summary.get('route_m') or 0):.0f} m"
    ]


class GroupBuildingsAlgorithm(_SurveyAlgorithm):
    """heritage group: regroup the flagged photos of a survey per building."""

    ALG_ID = "groupbuildings"
    COMMAND = "group"
    DISPLAY = "Group flagged photos per building"
    HELP = (
        "Groups the flagged photos of a classified survey GeoPackage per building: by the "
        "building footprints if given (photos within the maximum distance of a footprint), "
        "else by clustering photos closer than the cluster distance. Rewrites the priority "
        "of every observation and the layer 'flagged_buildings' (and the route's visit order)."
    )

    def initAlgorithm(self, config=None):
        self.addParameter(
            QgsProcessingParameterFile("INPUT", self.tr("Survey GeoPackage"), extension="gpkg")
        )
        self.addParameter(
            QgsProcessingParameterVectorLayer(
                "FOOTPRINTS",
                self.tr("Building footprints"),
                [QgsProcessing.SourceType.TypeVectorPolygon],
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                "MAX_DISTANCE",
                self.tr("Maximum distance from a photo to its footprint (m)"),
                type=QgsProcessingParameterNumber.Type.Double,
                defaultValue=25.0,
                minValue=0.0,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                "CLUSTER_EPS",
                self.tr("Distance between flagged photos of one building (m, no footprints)"),
                type=QgsProcessingParameterNumber.Type.Double,
                defaultValue=30.0,
                minValue=0.001,
            )
        )
        self._add_layer_outputs(("flagged_buildings", "observations"))

    def check_values(self, parameters, context):
        problems: list[str] = []
        self._check_survey_input(parameters, context, problems)
        self._check_vector(
            "FOOTPRINTS", self.tr("Building footprints"), parameters, context, problems
        )
        return problems

    def build_args(self, parameters, context):
        gpkg = self.parameterAsFile(parameters, "INPUT", context)
        args = ["group", gpkg]
        args += self._vector_args("--footprints", "FOOTPRINTS", parameters, context)
        args += [
            "--max-distance",
            repr(self.parameterAsDouble(parameters, "MAX_DISTANCE", context)),
            "--cluster-eps",
            repr(self.parameterAsDouble(parameters, "CLUSTER_EPS", context)),
        ]
        return [*args, "--json-progress"]

    def processAlgorithm(self, parameters, context, feedback):
        gpkg = self.parameterAsFile(parameters, "INPUT", context)
        self.run_backend(self.build_args(parameters, context), feedback)
        return self._layer_results(context, gpkg, ("flagged_buildings", "observations"))


class PlanRouteAlgorithm(_SurveyAlgorithm):
    """heritage route: plan the inspection route of a survey's flagged buildings."""

    ALG_ID = "planroute"
    COMMAND = "route"
    DISPLAY = "Plan an inspection route"
    HELP = (
        "Plans an open inspection path through the flagged buildings of a classified survey "
        "GeoPackage, from the start point (lon,lat in WGS84 degrees or picked on the map; "
        "default: the highest-priority building), optionally visiting category A first, then "
        "B..., along a street network if given. Rewrites the layer 'inspection_route' and the "
        "buildings' visit order."
    )

    def initAlgorithm(self, config=None):
        self.addParameter(
            QgsProcessingParameterFile("INPUT", self.tr("Survey GeoPackage"), extension="gpkg")
        )
        self.addParameter(
            QgsProcessingParameterPoint(
                "START", self.tr("Route start (lon,lat or picked on the map)"), optional=True
            )
        )
        self.addParameter(
            QgsProcessingParameterBoolean(
                "BY_PRIORITY", self.tr("Visit category A first, then B..."), defaultValue=False
            )
        )
        self.addParameter(
            QgsProcessingParameterVectorLayer(
                "NETWORK",
                self.tr("Streets/paths to route along"),
                [QgsProcessing.SourceType.TypeVectorLine],
                optional=True,
            )
        )
        self._add_layer_outputs(("inspection_route", "flagged_buildings"))

    def check_values(self, parameters, context):
        problems: list[str] = []
        self._check_survey_input(parameters, context, problems)
        self._check_start(parameters, problems)
        self._check_vector("NETWORK", self.tr("Street network"), parameters, context, problems)
        return problems

    def build_args(self, parameters, context):
        gpkg = self.parameterAsFile(parameters, "INPUT", context)
        args = ["route", gpkg, *self._start_args(parameters)]
        args += self._vector_args("--network", "NETWORK", parameters, context)
        if self.parameterAsBoolean(parameters, "BY_PRIORITY", context):
            args.append("--by-priority")
        return [*args, "--json-progress"]

    def processAlgorithm(self, parameters, context, feedback):
        gpkg = self.parameterAsFile(parameters, "INPUT", context)
        self.run_backend(self.build_args(parameters, context), feedback)
        return self._layer_results(context, gpkg, ("inspection_route", "flagged_buildings"))
