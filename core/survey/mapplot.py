"""A static PNG map of a survey GeoPackage (matplotlib).

Drawn in the metric CRS of the survey area (so that distances look right):
building polygons filled by priority category, the inspection route with its visit
numbers at the buildings, and every located observation as a point coloured by its
priority category (A dark red ... F light grey, not flagged small grey), with a scale
bar and a north arrow, over a local basemap when one is given (:mod:`heritage.survey.basemap`:
a georeferenced raster or a folder of XYZ tiles, nothing downloaded). For reports
and the demo; the GeoPackage's QGIS styles use the same colours.

matplotlib (Agg backend) and geopandas are imported inside :func:`plot_survey`.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

from heritage.kernel.errors import DataError, InputNotFoundError
from heritage.survey.priority import CATEGORIES, CATEGORY_LABELS

#: ``observations.decision`` of a photo without a wall in view (heritage.model.scene)
NOT_ASSESSABLE = "not_assessable"

logger = logging.getLogger(__name__)

#: colour of each priority category (same as heritage/io/qml/*.qml)
CATEGORY_COLOURS: dict[str, str] = {
    "A": "#67000d",
    "B": "#c62828",
    "C": "#ef6c00",
    "D": "#f9a825",
    "E": "#fff176",
    "F": "#cfcfcf",
    "none": "#8c8c8c",
}


def _read(gpkg: Path, layer: str, layers: set[str]):
    import pyogrio

    if layer not in layers:
        return None
    gdf = pyogrio.read_dataframe(gpkg, layer=layer)
    gdf = gdf[~(gdf.geometry.isna() | gdf.geometry.is_empty)]
    return gdf if len(gdf) else None


def _zoom(ax, obs, buildings, route, pad: float = 0.15, min_span_m: float = 200.0) -> int:
    """Frame the buildings and route (else all points); returns the points left outside."""
    import numpy as np

    frames = [g for g in (buildings, route) if g is not None]
    if not frames:
        return 0
    bounds = np.array([f.total_bounds for f in frames])
    x0, y0 = bounds[:, 0].min(), bounds[:, 1].min()
    x1, y1 = bounds[:, 2].max(), bounds[:, 3].max()
    span = max(x1 - x0, y1 - y0, min_span_m)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    half = span * (0.5 + pad)
    ax.set_xlim(cx - half, cx + half)
    ax.set_ylim(cy - half, cy + half)
    x, y = obs.geometry.x.to_numpy(), obs.geometry.y.to_numpy()
    inside = (abs(x - cx) <= half) & (abs(y - cy) <= half)
    return int((~inside).sum())


def nice_length(span: float) -> float:
    """A round scale-bar length (1, 2 or 5 x 10^k) of about a fifth of ``span``."""
    target = max(span / 5.0, 1e-9)
    exp = math.floor(math.log10(target))
    for m in (5, 2, 1):
        if m * 10**exp <= target:
            return float(m * 10**exp)
    return float(10**exp)


def add_scale_bar(ax) -> float:
    """A scale bar (metres) in the lower left corner of ``ax``; returns its length."""
    import matplotlib.font_manager as fm
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    x0, x1 = ax.get_xlim()
    length = nice_length(x1 - x0)
    label = f"{length / 1000:g} km" if length >= 1000 else f"{length:g} m"
    bar = AnchoredSizeBar(
        ax.transData,
        length,
        label,
        "lower left",
        pad=0.6,
        sep=4,
        frameon=True,
        size_vertical=(x1 - x0) / 250,
        fontproperties=fm.FontProperties(size=8),
    )
    bar.patch.set_alpha(0.8)
    ax.add_artist(bar)
    return length


def add_north_arrow(ax) -> None:
    """A north arrow in the upper left corner (grid north of the metric CRS)."""
    ax.annotate(
        "N",
        xy=(0.05, 0.96),
        xytext=(0.05, 0.86),
        xycoords="axes fraction",
        ha="center",
        va="center",
        fontsize=11,
        fontweight="bold",
        arrowprops={"arrowstyle": "-|>", "color": "black", "lw": 1.5},
        zorder=10,
    )


def _draw_basemap(ax, basemap: str | Path, crs, dpi: int) -> None:
    from heritage.survey.basemap import basemap_image

    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    width = int(ax.get_window_extent().width * dpi / ax.figure.dpi)
    img = basemap_image(basemap, crs, (x0, x1, y0, y1), width_px=max(200, width))
    if img is not None:
        ax.imshow(img, extent=(x0, x1, y0, y1), origin="upper", zorder=0, interpolation="bilinear")
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)


def plot_survey(
    gpkg: str | Path,
    png: str | Path,
    *,
    title: str | None = None,
    dpi: int = 150,
    size_in: tuple[float, float] = (9.0, 8.0),
    basemap: str | Path | None = None,
) -> Path:
    """Render the survey ``gpkg`` (observations, flagged_buildings, inspection_route) to ``png``.

    ``basemap``: a georeferenced raster or a folder of XYZ tiles drawn underneath.
    Raises InputNotFoundError for a missing file and DataError when the GeoPackage
    has no located observation. Returns the PNG path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pyogrio
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    from heritage.io.geo import metric_crs_for

    gpkg, png = Path(gpkg), Path(png)
    if not gpkg.is_file():
        raise InputNotFoundError(f"survey GeoPackage not found: {gpkg}")
    layers = {str(n) for n, _ in pyogrio.list_layers(gpkg)}
    obs = _read(gpkg, "observations", layers)
    if obs is None:
        raise DataError(f"{gpkg} has no located observations to map; run heritage classify")
    buildings = _read(gpkg, "flagged_buildings", layers)
    route = _read(gpkg, "inspection_route", layers)
    crs = metric_crs_for(obs)
    obs = obs.to_crs(crs)
    cats = obs["priority_category"].fillna("none").astype(str)
    unjudged = (
        obs["decision"].astype(str).eq(NOT_ASSESSABLE)
        if "decision" in obs
        else obs.index.to_series(index=obs.index).map(lambda _: False)
    )

    fig, ax = plt.subplots(figsize=size_in)
    if buildings is not None:
        buildings = buildings.to_crs(crs)
        colours = [CATEGORY_COLOURS.get(str(c), "#ffffff") for c in buildings["priority_category"]]
        buildings.plot(ax=ax, color=colours, alpha=0.45, edgecolor="#333333", linewidth=0.8)
    # every geopandas plot redraws the figure: the layers first, the annotations after
    if unjudged.any():  # scene mode found no wall in view: hollow grey squares
        obs[unjudged].plot(
            ax=ax, marker="s", facecolor="none", edgecolor="#5a5a5a", markersize=22,
            linewidth=0.8, zorder=5,
        )  # fmt: skip
    for code in reversed(CATEGORIES):  # most urgent drawn last, on top
        sel = obs[(cats == code) & ~unjudged]
        if len(sel):
            sel.plot(
                ax=ax,
                color=CATEGORY_COLOURS[code],
                markersize=18 if code == "none" else 55,
                edgecolor="#222222",
                linewidth=0.5,
                zorder=5,
            )
    if route is not None:
        route = route.to_crs(crs)
        route.plot(ax=ax, color="#1f3b73", linewidth=1.6, zorder=3)
        if "from_id" in route.columns and str(route["from_id"].iloc[0]) == "start":
            x, y = route.geometry.iloc[0].coords[0]
            ax.plot([x], [y], marker="*", markersize=14, color="#1f3b73", zorder=6)
        for geom in route.geometry:
            (x0, y0), (x1, y1) = geom.coords[-2], geom.coords[-1]
            ax.annotate(
                "",
                xy=(x1, y1),
                xytext=(x0 + 0.8 * (x1 - x0), y0 + 0.8 * (y1 - y0)),
                arrowprops={"arrowstyle": "-|>", "color": "#1f3b73", "lw": 1.2},
                zorder=4,
            )
    if buildings is not None and "visit_order" in buildings.columns:
        for geom, visit in zip(buildings.geometry, buildings["visit_order"], strict=True):
            p = geom.representative_point()
            ax.annotate(
                str(int(visit)),
                (p.x, p.y),
                xytext=(12, 12),
                textcoords="offset points",
                ha="center",
                va="center",
                fontsize=10,
                fontweight="bold",
                zorder=6,
                bbox={"boxstyle": "circle,pad=0.25", "fc": "white", "ec": "#1f3b73"},
            )
    present = [c for c in CATEGORIES if ((cats == c) & ~unjudged).any()]
    handles = [
        Patch(
            facecolor=CATEGORY_COLOURS[c], edgecolor="#222222", label=f"{c}: {CATEGORY_LABELS[c]}"
        )
        for c in present
    ]
    if unjudged.any():
        handles.append(
            Line2D([], [], marker="s", linestyle="", markerfacecolor="none",
                   markeredgecolor="#5a5a5a", label="not assessable (no wall in view)")
        )  # fmt: skip
    if route is not None:
        total = float(route["cumulative_m"].max())
        handles.append(Line2D([], [], color="#1f3b73", label=f"inspection route ({total:.0f} m)"))
    ax.legend(handles=handles, loc="upper right", fontsize=8, framealpha=0.9)
    n_flagged = int(obs["flagged"].fillna(False).astype(bool).sum()) if "flagged" in obs else 0
    outside = _zoom(ax, obs, buildings, route)
    ax.set_aspect("equal")
    if basemap is not None:
        _draw_basemap(ax, basemap, crs, dpi)
    add_scale_bar(ax)
    add_north_arrow(ax)
    note = f" ({outside} outside the view)" if outside else ""
    n_unjudged = int(unjudged.sum())
    ax.set_title(
        title
        or f"{gpkg.name}: {len(obs)} located photos{note}, {n_flagged} flagged, "
        f"{n_unjudged} not assessable"
    )
    crs_name = crs.name if crs.name and crs.name != "unknown" else "local equidistant"
    ax.set_xlabel(f"easting (m, {crs_name})", fontsize=8)
    ax.set_ylabel("northing (m)", fontsize=8)
    ax.ticklabel_format(useOffset=False, style="plain")
    ax.tick_params(labelsize=7)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=dpi)
    plt.close(fig)
    logger.debug("survey map written to %s", png)
    return png
