"""heritage: find defects on cultural-heritage buildings in survey photos.

The core library never imports QGIS or Qt; heavy libraries (torch, geopandas,
rasterio) are imported inside the functions that need them, so that light
commands such as ``heritage --help`` start fast.
"""

__version__ = "0.1.0"
