"""A QgsTask that runs one backend command in the background (progress + Cancel)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from qgis.core import Qgis, QgsMessageLog, QgsTask
from qgis.PyQt.QtCore import pyqtSignal

from . import backend
from .common import LOG_TAG


class _TaskListener:
    """Backend runner events -> the task's progress, cancel flag and the message log."""

    def __init__(self, task: BackendTask) -> None:
        self.task = task

    def progress(self, percent: float) -> None:
        self.task.setProgress(percent)

    def stage(self, text: str) -> None:
        self.task.stage_text = text
        self.task.statusChanged.emit(text)
        QgsMessageLog.logMessage(text, LOG_TAG, Qgis.MessageLevel.Info)

    def status(self, text: str) -> None:
        self.task.statusChanged.emit(text)

    def message(self, text: str) -> None:
        self.task.messages.append(text)
        level = (
            Qgis.MessageLevel.Warning
            if text.lower().startswith("warning")
            else Qgis.MessageLevel.Info
        )
        QgsMessageLog.logMessage(text, LOG_TAG, level)

    def log(self, text: str) -> None:
        QgsMessageLog.logMessage(text, LOG_TAG, Qgis.MessageLevel.Info)

    def is_canceled(self) -> bool:
        return self.task.isCanceled()


class BackendTask(QgsTask):
    """Runs ``heritage *args`` off the main thread.

    After the task ends, ``result`` holds the :class:`backend.RunResult` (or None) and
    ``error`` the exception (BackendCancelled when the user cancelled, its ``result``
    holding what the backend kept); ``on_done`` is called on the main thread with the
    task. ``statusChanged`` carries the backend's stage and state ("Classifying
    photos: 12 of 40", "Stopping: ... about 6 s left") to the main thread.
    """

    statusChanged = pyqtSignal(str)

    def __init__(
        self,
        description: str,
        args: Sequence[str],
        on_done: Callable[[BackendTask], None] | None = None,
        exe: str | None = None,
    ) -> None:
        super().__init__(description, QgsTask.Flag.CanCancel)
        self.args = list(args)
        self.exe = exe
        self.on_done = on_done
        self.result: backend.RunResult | None = None
        self.error: Exception | None = None
        self.stage_text = ""
        self.messages: list[str] = []
        self.process_pid: int | None = None

    def _started(self, proc) -> None:
        self.process_pid = proc.pid

    def run(self) -> bool:
        """Worker thread: run the backend to the end (or until cancelled)."""
        try:
            self.result = backend.run_backend(
                self.args, _TaskListener(self), exe=self.exe, on_started=self._started
            )
        except Exception as exc:  # reported on the main thread by finished()
            self.error = exc
            return False
        return True

    def finished(self, result: bool) -> None:
        """Main thread: log the outcome and hand over to ``on_done``."""
        if self.error is not None and not isinstance(self.error, backend.BackendCancelled):
            QgsMessageLog.logMessage(
                f"{self.description()} failed: {self.error}", LOG_TAG, Qgis.MessageLevel.Critical
            )
        if self.on_done is not None:
            self.on_done(self)
