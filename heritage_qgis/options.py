"""The plugin's page in Settings > Options: the backend path, Test, and Install."""

from __future__ import annotations

from pathlib import Path

from qgis.core import QgsApplication, QgsTask
from qgis.gui import QgsFileWidget, QgsOptionsPageWidget, QgsOptionsWidgetFactory
from qgis.PyQt.QtCore import QCoreApplication, pyqtSignal
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import (
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
)

# installer, settings and backend are imported where they are used: the plugin imports
# this module when it loads (for the Options page), and QGIS drops the modules imported
# then when it unloads the plugin; modules imported later keep their own references

PAGE_TITLE = "Heritage"


def tr(text: str) -> str:
    """Translate ``text`` (context "Heritage")."""
    return QCoreApplication.translate("Heritage", text)


def test_backend(path: str) -> tuple[bool, str]:
    """What the Test button says about ``path`` (empty: the backend found
    automatically): ``(works, one line)``."""
    from . import installer, settings
    from .backend import BackendNotFoundError

    try:
        exe = path or settings.effective_backend()
    except BackendNotFoundError as exc:
        return False, str(exc)
    if not Path(exe).is_file():
        return False, tr("{0} does not exist: choose the `heritage` command or install the "
                         "backend below.").format(exe)  # fmt: skip
    try:
        info = installer.check_backend(exe)
    except installer.InstallError as exc:
        return False, str(exc)
    return bool(info.get("model_ok")), f"{exe}: {installer.describe(info)}"


class InstallTask(QgsTask):
    """Runs :func:`heritage_qgis.installer.install` in the background."""

    stageChanged = pyqtSignal(str)

    def __init__(self, plan) -> None:
        super().__init__(tr("Heritage: installing the backend"), QgsTask.Flag.CanCancel)
        self.plan = plan
        self.exe: Path | None = None
        self.error: Exception | None = None

    # the installer's listener protocol
    def stage(self, text: str) -> None:
        self.stageChanged.emit(text)

    def progress(self, percent: float) -> None:
        self.setProgress(percent)

    def log(self, text: str) -> None:
        from qgis.core import Qgis, QgsMessageLog

        QgsMessageLog.logMessage(text, "Heritage", Qgis.MessageLevel.Info)

    def message(self, text: str) -> None:
        self.log(text)

    def is_canceled(self) -> bool:
        return self.isCanceled()

    def run(self) -> bool:
        from . import installer

        try:
            self.exe = installer.install(self.plan, self)
        except Exception as exc:  # reported by the page
            self.error = exc
            return False
        return True


class HeritageOptionsPage(QgsOptionsPageWidget):
    """Backend path with Browse and Test; Install the backend (PyPI or a wheel folder)."""

    def __init__(self, parent=None) -> None:
        from . import installer, settings

        super().__init__(parent)
        self.task: InstallTask | None = None
        self.path = QgsFileWidget()
        self.path.setStorageMode(QgsFileWidget.StorageMode.GetFile)
        self.path.setDialogTitle(tr("The heritage command of the backend"))
        self.path.setFilePath(settings.backend_path())
        self.path.lineEdit().setPlaceholderText(tr("empty: found automatically"))
        self.test_button = QPushButton(tr("Test"))
        self.test_button.setToolTip(tr("Run the backend: its version and the model it will use"))
        self.test_button.clicked.connect(self.run_test)
        self.result = QLabel("")
        self.result.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(self.path)
        row.addWidget(self.test_button)
        form = QFormLayout()
        form.addRow(tr("Backend (heritage command)"), row)
        form.addRow("", self.result)

        self.wheelhouse = QgsFileWidget()
        self.wheelhouse.setStorageMode(QgsFileWidget.StorageMode.GetDirectory)
        self.wheelhouse.lineEdit().setPlaceholderText(
            tr("`make wheelhouse` builds it; empty: download from PyPI")
        )
        self.python = QgsFileWidget()
        self.python.setStorageMode(QgsFileWidget.StorageMode.GetFile)
        self.python.setFilePath(installer.find_python() or "")
        self.python.lineEdit().setPlaceholderText(tr("a Python 3.11 interpreter"))
        self.target = QLabel(str(installer.default_target()))
        self.target.setWordWrap(True)
        self.install_button = QPushButton(tr("Install the backend"))
        self.install_button.clicked.connect(self.start_install)
        self.install_progress = QProgressBar()
        self.install_progress.setRange(0, 100)
        self.install_status = QLabel("")
        self.install_status.setWordWrap(True)
        box = QGroupBox(tr("Install the backend into a private Python environment"))
        install_form = QFormLayout(box)
        install_form.addRow(tr("Folder of wheels (offline)"), self.wheelhouse)
        install_form.addRow(tr("Python 3.11"), self.python)
        install_form.addRow(tr("Installed into"), self.target)
        install_form.addRow("", self.install_button)
        install_form.addRow("", self.install_progress)
        install_form.addRow("", self.install_status)

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(box)
        layout.addStretch(1)

    def run_test(self) -> bool:
        """Run the backend in the path field (or the one found) and show what it says."""
        ok, text = test_backend(self.path.filePath().strip())
        self.result.setText(("\u2714 " if ok else "\u2716 ") + text)
        return ok

    def plan(self):
        """The installation the page's fields describe (an ``InstallPlan``)."""
        from . import installer

        wheels = self.wheelhouse.filePath().strip()
        return installer.InstallPlan(
            target=installer.default_target(),
            python=self.python.filePath().strip() or (installer.find_python() or "python3"),
            wheelhouse=Path(wheels) if wheels else None,
        )

    def start_install(self, plan=None) -> InstallTask:
        """Install in the background; the path field and the setting follow on success."""
        self.task = InstallTask(plan or self.plan())
        self.task.progressChanged.connect(lambda p: self.install_progress.setValue(int(p)))
        self.task.stageChanged.connect(self.install_status.setText)
        self.task.taskCompleted.connect(self._installed)
        self.task.taskTerminated.connect(self._failed)
        self.install_button.setEnabled(False)
        self.install_status.setText(tr("Starting..."))
        QgsApplication.taskManager().addTask(self.task)
        return self.task

    def _installed(self) -> None:
        from . import settings

        task, self.task = self.task, None
        self.install_button.setEnabled(True)
        if task is None or task.exe is None:
            return
        self.path.setFilePath(str(task.exe))
        settings.set_backend_path(str(task.exe))
        self.install_status.setText(tr("Installed: {0}").format(task.exe))
        self.run_test()

    def _failed(self) -> None:
        task, self.task = self.task, None
        self.install_button.setEnabled(True)
        reason = task.error if task is not None and task.error else tr("canceled")
        self.install_status.setText(tr("Not installed: {0}").format(reason))

    def apply(self) -> None:
        """OK in the Options dialog: store the path (empty: find it automatically)."""
        from . import settings

        settings.set_backend_path(self.path.filePath().strip())


class HeritageOptionsFactory(QgsOptionsWidgetFactory):
    """Adds the Heritage page to Settings > Options."""

    def __init__(self, icon: QIcon | None = None) -> None:
        super().__init__()
        self.setTitle(PAGE_TITLE)
        if icon is not None:
            self.setIcon(icon)

    def createWidget(self, parent):
        return HeritageOptionsPage(parent)
