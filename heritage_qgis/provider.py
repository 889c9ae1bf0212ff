"""The "Heritage" Processing provider."""

from __future__ import annotations

from qgis.core import QgsProcessingProvider


class HeritageProvider(QgsProcessingProvider):
    """Lists the Heritage algorithms in the Toolbox, Model Designer and qgis_process."""

    def id(self) -> str:
        return "heritage"

    def name(self) -> str:
        return "Heritage"

    def longName(self) -> str:
        return "Heritage: defects on cultural-heritage buildings"

    def icon(self):
        from qgis.PyQt.QtGui import QIcon

        from .common import icon_path

        return QIcon(icon_path())

    def loadAlgorithms(self) -> None:
        from .alg_base import init_main_thread_loader
        from .algorithms import all_algorithms

        init_main_thread_loader()  # QGIS loads providers on the main thread
        for alg in all_algorithms():
            self.addAlgorithm(alg)
