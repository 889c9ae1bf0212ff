"""Processing algorithms of the Heritage provider."""

from __future__ import annotations


def all_algorithms() -> list:
    """Fresh instances of every Heritage algorithm."""
    from .alg_inspection import (
        CreateAtlasAlgorithm,
        FieldPackageAlgorithm,
        WriteReportAlgorithm,
    )
    from .alg_raster import ClassifyRasterAlgorithm
    from .alg_survey import (
        ClassifySurveyAlgorithm,
        GroupBuildingsAlgorithm,
        ImportPhotosAlgorithm,
        PlanRouteAlgorithm,
    )
    from .alg_train import TrainModelAlgorithm

    return [
        ImportPhotosAlgorithm(),
        ClassifySurveyAlgorithm(),
        ClassifyRasterAlgorithm(),
        GroupBuildingsAlgorithm(),
        PlanRouteAlgorithm(),
        TrainModelAlgorithm(),
        WriteReportAlgorithm(),
        CreateAtlasAlgorithm(),
        FieldPackageAlgorithm(),
    ]
