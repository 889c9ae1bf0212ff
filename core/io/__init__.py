"""Files: atomic writes, file names, GeoPackage, survey files, CRS, EXIF, QGIS styles."""
