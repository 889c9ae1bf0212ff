"""Base class of the Heritage Processing algorithms: validation, backend run, outputs."""

from __future__ import annotations

from typing import Any

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingLayerPostProcessorInterface,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QCoreApplication, QObject, pyqtSignal

from . import backend

#: keeps post-processors alive until Processing has used them (it holds C++ pointers)
_POST_PROCESSORS: list[QgsProcessingLayerPostProcessorInterface] = []


class _MainThreadLoader(QObject):
    """Loads survey layers on the main thread when asked from a Processing worker.

    Processing loads nothing after a cancel (its result handler returns at once when
    the feedback is cancelled), so a cancelled survey algorithm loads its partial
    layers through this object instead, the same way the dialog does."""

    load = pyqtSignal(str, list)

    def __init__(self) -> None:
        super().__init__()
        self.load.connect(self._load)

    def _load(self, gpkg: str, names: list) -> None:
        from qgis.core import QgsProject

        from .results import iface_canvas, load_survey, zoom_to

        loaded = load_survey(gpkg, QgsProject.instance(), tuple(names))
        zoomable = [lay for name, lay in loaded.items() if name in ZOOM_LAYERS]
        zoom_to(iface_canvas(), zoomable)


_LOADER: _MainThreadLoader | None = None


def init_main_thread_loader() -> None:
    """Create the loader; call on the main thread (the provider does, when it loads)."""
    global _LOADER
    if _LOADER is None:
        _LOADER = _MainThreadLoader()


def load_after_cancel(gpkg: str, names: list[str]) -> bool:
    """Ask the main thread to load ``names`` of ``gpkg``; False without a loader."""
    if _LOADER is None:
        return False
    _LOADER.load.emit(gpkg, list(names))
    return True


class FeedbackListener:
    """Backend runner events -> QgsProcessingFeedback (thread-safe calls only)."""

    def __init__(self, feedback: QgsProcessingFeedback | None) -> None:
        self.feedback = feedback or QgsProcessingFeedback()

    def progress(self, percent: float) -> None:
        self.feedback.setProgress(percent)

    def stage(self, text: str) -> None:
        self.feedback.setProgressText(text)
        self.feedback.pushInfo(text)

    def status(self, text: str) -> None:
        self.feedback.setProgressText(text)

    def message(self, text: str) -> None:
        if text.lower().startswith("warning"):
            self.feedback.reportError(text, fatalError=False)
        else:
            self.feedback.pushInfo(text)

    def log(self, text: str) -> None:
        self.feedback.pushDebugInfo(text)

    def is_canceled(self) -> bool:
        return self.feedback.isCanceled()


#: the layers the map zooms to when Processing loads them
ZOOM_LAYERS = ("observations", "photos", "raster_defects")


class _SurveyLayerPostProcessor(QgsProcessingLayerPostProcessorInterface):
    """Presents a layer Processing loaded exactly as the survey dialog does
    (:func:`heritage_qgis.results.present_layer`): style, labels, map tips, forms,
    the survey's group, a projected project CRS, zoom."""

    def __init__(self, gpkg: str, layer_name: str) -> None:
        super().__init__()
        self.gpkg = gpkg
        self.layer_name = layer_name

    def postProcessLayer(self, layer, context, feedback) -> None:
        from qgis.core import QgsProject

        from .results import iface_canvas, present_layer, zoom_to

        if isinstance(layer, QgsVectorLayer):
            project = context.project() or QgsProject.instance()
            present_layer(layer, self.layer_name, self.gpkg, project)
            if self.layer_name in ZOOM_LAYERS:
                zoom_to(iface_canvas(), [layer], project)


class HeritageAlgorithm(QgsProcessingAlgorithm):
    """Common behaviour: tr(), groups, parameter checks, the backend run."""

    #: algorithm id (without the provider prefix)
    ALG_ID = ""
    #: the backend sub-command this algorithm runs
    COMMAND = ""
    GROUP_ID = "survey"
    GROUP = "Survey"
    DISPLAY = ""
    HELP = ""
    #: seconds the backend gets after a cancel (SIGTERM) to stop cleanly before SIGKILL
    CANCEL_GRACE_S = backend.GRACE_S

    def tr(self, text: str) -> str:
        """Translate ``text`` (context "Heritage")."""
        return QCoreApplication.translate("Heritage", text)

    def createInstance(self):
        return type(self)()

    def name(self) -> str:
        return self.ALG_ID

    def displayName(self) -> str:
        return self.tr(self.DISPLAY)

    def group(self) -> str:
        return self.tr(self.GROUP)

    def groupId(self) -> str:
        return self.GROUP_ID

    def shortHelpString(self) -> str:
        return self.tr(self.HELP)

    def helpUrl(self) -> str:
        return ""  # no public home page yet: the help text is the documentation

    # ----------------------------------------------------------- validation

    def check_values(self, parameters: dict[str, Any], context: QgsProcessingContext) -> list[str]:
        """Problems with the parameter values (messages for the user); [] when fine."""
        return []

    def checkParameterValues(self, parameters, context):
        """Parameters first (clear messages), then QGIS' own checks, then the backend."""
        try:
            problems = self.check_values(parameters, context)
        except QgsProcessingException as exc:
            problems = [str(exc)]
        if problems:
            return False, "\n".join(problems)
        ok, msg = super().checkParameterValues(parameters, context)
        if not ok:
            return ok, msg
        problem = self.check_backend()
        return (False, problem) if problem else (True, "")

    def check_backend(self) -> str | None:
        """A message when the backend or its sub-command is missing, else None."""
        try:
            exe = backend.find_backend()
        except backend.BackendNotFoundError as exc:
            return str(exc)
        if self.COMMAND and not backend.has_command(self.COMMAND, exe):
            return self.tr(
                "The heritage backend at {exe} has no working `heritage {cmd}` command yet: "
                "update it (Settings > Options > Heritage > Install the backend)."
            ).format(exe=exe, cmd=self.COMMAND)
        return None

    # ----------------------------------------------------------- running

    def build_args(self, parameters: dict[str, Any], context: QgsProcessingContext) -> list[str]:
        """The backend command line (without the executable)."""
        raise NotImplementedError

    #: set by :meth:`run_backend` when the user cancelled (partial results)
    cancelled = False

    def run_backend(
        self, args: list[str], feedback: QgsProcessingFeedback | None
    ) -> backend.RunResult:
        """Run the backend; failures become QgsProcessingException with the reason.

        A cancel is not a failure: the backend stopped cleanly and kept its work, so
        the partial result is returned (``self.cancelled`` is set) and the log says
        what was kept."""
        self.cancelled = False
        try:
            return backend.run_backend(
                args, FeedbackListener(feedback), grace_s=self.CANCEL_GRACE_S
            )
        except backend.BackendCancelled as exc:
            self.cancelled = True
            result = exc.result or backend.RunResult(list(args), exc.returncode or 0)
            text = self.tr("Canceled by the user. {0}").format(self.kept_text(result))
            feedback = feedback or QgsProcessingFeedback()
            if hasattr(feedback, "pushWarning"):
                feedback.pushWarning(text)
            else:  # QGIS before 3.16.2
                feedback.pushInfo(text)
            return result
        except backend.BackendError as exc:
            raise QgsProcessingException(
                self.tr("heritage {cmd} failed: {reason}").format(cmd=self.COMMAND, reason=exc)
            ) from exc

    def kept_text(self, result: backend.RunResult) -> str:
        """What a cancelled run kept, for the log."""
        return self.tr("Everything the backend finished is kept; run again to complete it.")

    def load_on_completion(
        self,
        context: QgsProcessingContext,
        gpkg: str,
        layer_name: str,
        display_name: str,
        output_name: str,
    ) -> str:
        """Ask Processing to add ``gpkg|layername=layer_name`` to the project when done."""
        uri = f"{gpkg}|layername={layer_name}"
        details = QgsProcessingContext.LayerDetails(display_name, context.project(), output_name)
        post = _SurveyLayerPostProcessor(gpkg, layer_name)
        _POST_PROCESSORS.append(post)
        details.setPostProcessor(post)
        context.addLayerToLoadOnCompletion(uri, details)
        return uri
