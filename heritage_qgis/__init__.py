"""Heritage QGIS plugin: adapters only; the work runs in the heritage backend process."""


def classFactory(iface):
    """Called by QGIS to create the plugin instance."""
    from .plugin import HeritagePlugin

    return HeritagePlugin(iface)
