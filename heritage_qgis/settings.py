"""The plugin's settings (QgsSettings): where the backend is.

One place reads and writes them: the options page (:mod:`heritage_qgis.options`), the
backend installer and the tests all go through these functions.
"""

from __future__ import annotations

from qgis.core import QgsSettings

from .backend import SETTING_KEY, find_backend


def backend_path() -> str:
    """The backend executable set in the plugin settings ("" when none)."""
    value = QgsSettings().value(SETTING_KEY, "")
    return str(value) if value else ""


def set_backend_path(path: str) -> None:
    """Set (or with "" clear) the backend executable used by every algorithm and the
    dialog from now on."""
    settings = QgsSettings()
    if path:
        settings.setValue(SETTING_KEY, str(path))
    else:
        settings.remove(SETTING_KEY)


def effective_backend() -> str:
    """The backend that will run (setting, environment, PATH, source tree);
    raises :class:`heritage_qgis.backend.BackendNotFoundError` with what to do."""
    return find_backend()
