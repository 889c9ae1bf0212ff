"""heritage classify-raster: windowed reading, bounded stitching, a valid georeferenced output.

A small orthophoto (600x450 px, EPSG:32632, 1 cm/px, a dark crack line, a nodata
border) is classified with a tiny random two-stage model (mobilenet_v3_small +
resnet18 at 64 px): the values mean nothing, the plumbing is what is checked.
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.io
from click.testing import CliRunner
from factories import tiny_model_dir
from rasterio.transform import from_origin

from heritage.kernel.errors import (
    CancelledError,
    DataError,
    InputNotFoundError,
    ModelError,
)
from heritage.kernel.progress import NullProgress
from heritage.model.card import load_model
from heritage.survey.raster import (
    NODATA,
    RasterConfig,
    axis_offsets,
    band_scaling,
    classify_raster,
    out_span,
    overview_factors,
    resolve_bands,
    tile_grid,
)

SIZE = 64
TILE = 200  # input px per tile (resized to SIZE): 4x3 tiles, fast tests
LABELS = ("crack", "no_crack", "salt_damage")
TRANSFORM = from_origin(500000.0, 5000000.0, 0.01, 0.01)  # UTM 32N, 1 cm/px
W, H = 600, 450
BORDER_LEFT, BORDER_BOTTOM = 40, 110


def make_raster(
    path: Path,
    width: int = W,
    height: int = H,
    count: int = 3,
    dtype: str = "uint8",
    crs: str | None = "EPSG:32632",
    border: tuple[int, int] = (BORDER_LEFT, BORDER_BOTTOM),
) -> Path:
    """A wall texture with a dark crack line; ``border`` (left cols, bottom rows) nodata 0."""
    rng = np.random.default_rng(1)
    img = rng.normal(170, 12, (height, width)).clip(1, 255)
    yy = np.arange(width) * 0.3 + height * 0.3  # a slanted crack
    for x in range(width // 5, 4 * width // 5):
        y = int(yy[x]) % height
        img[max(0, y - 2) : y + 2, x] = 25
    if dtype == "uint8":
        data = np.repeat(img[None], count, axis=0).astype(np.uint8)
    else:  # 16-bit-like range: 1000..~4000
        data = np.repeat((img[None] * 16 + 1000), count, axis=0).astype(dtype)
    left, bottom = border
    data[:, :, :left] = 0
    if bottom:
        data[:, height - bottom :, :] = 0
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": count,
        "dtype": dtype,
        "nodata": 0,
    }
    if crs is not None:
        profile.update(crs=crs, transform=TRANSFORM)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


class ReadSpy:
    """Records every read/read_masks/dataset_mask call on any open raster."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[str, object, object]] = []
        for name in ("read", "read_masks", "dataset_mask"):
            original = getattr(rasterio.io.DatasetReader, name)
            monkeypatch.setattr(rasterio.io.DatasetReader, name, self._wrap(name, original))

    def _wrap(self, name, original):
        def spy(ds, *args, **kwargs):
            self.calls.append((name, kwargs.get("window"), kwargs.get("out_shape")))
            return original(ds, *args, **kwargs)

        return spy

    def check_bounded(self, tile: int, max_pixels: int) -> None:
        assert self.calls, "no read was recorded: the spy does not see the reads"
        for name, window, out_shape in self.calls:
            if window is not None:
                assert window.width <= tile and window.height <= tile, (name, window)
            else:
                assert out_shape is not None, f"{name} read the whole raster"
                assert out_shape[-1] * out_shape[-2] <= max_pixels, (name, out_shape)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return tiny_model_dir(tmp_path_factory.mktemp("model") / "tiny", model_id="tiny-raster")


@pytest.fixture(scope="module")
def loaded(model_dir):
    return load_model(model_dir)


@pytest.fixture(scope="module")
def ortho(tmp_path_factory) -> Path:
    return make_raster(tmp_path_factory.mktemp("in") / "ortho.tif")


@pytest.fixture(scope="module")
def main_run(tmp_path_factory, ortho, loaded):
    """One full run (with --vector, threshold 0 so every tile is a polygon), reads spied."""
    out_dir = tmp_path_factory.mktemp("out")
    with pytest.MonkeyPatch.context() as mp:
        spy = ReadSpy(mp)
        summary = classify_raster(
            ortho,
            out_dir / "defects.tif",
            config=RasterConfig(tile_size=TILE, batch_size=32, threshold=0.0),
            vector=out_dir / "defects.gpkg",
            loaded=loaded,
        )
    return summary, spy


def small_config(**kw) -> RasterConfig:
    return RasterConfig(**{"tile_size": 100, "batch_size": 32, **kw})


# ----------------------------------------------------------------------- pure parts


def test_axis_offsets_cover_the_axis_with_whole_tiles():
    assert axis_offsets(600, 128, 96) == [0, 96, 192, 288, 384, 472]
    assert axis_offsets(128, 128, 96) == [0]
    assert axis_offsets(50, 128, 96) == [0]  # shorter than a tile: one (smaller) tile
    for length in (129, 300, 1001):
        offs = axis_offsets(length, 64, 48)
        assert offs[0] == 0 and offs[-1] + 64 == length
        assert all(0 < b - a <= 48 for a, b in itertools.pairwise(offs))


def test_tile_grid_is_row_major_and_inside_the_raster():
    grid = tile_grid(600, 450, 128, 0.25)
    assert len(grid) == 6 * 5
    assert [(w.col_off, w.row_off) for w in grid[:2]] == [(0, 0), (96, 0)]
    assert all(w.col_off + w.width <= 600 and w.row_off + w.height <= 450 for w in grid)
    small = tile_grid(50, 40, 128, 0.25)
    assert [(w.width, w.height) for w in small] == [(50, 40)]


def test_out_span_and_overview_factors():
    assert out_span(96, 128, 1, 600) == (96, 224)
    assert out_span(96, 128, 2, 300) == (48, 112)
    assert out_span(472, 128, 3, 200) == (157, 200)
    assert overview_factors(600, 450) == [2, 4, 8]
    assert overview_factors(60, 40) == []


def test_resolve_bands():
    assert resolve_bands(4, None) == (1, 2, 3)
    assert resolve_bands(1, None) == (1, 1, 1)
    assert resolve_bands(2, None) == (1, 1, 1)
    assert resolve_bands(5, (3,)) == (3, 3, 3)
    with pytest.raises(DataError, match="do not exist"):
        resolve_bands(3, (1, 2, 4))
    with pytest.raises(DataError, match="1 band"):
        resolve_bands(3, (1, 2))


def test_config_validation():
    with pytest.raises(ValueError, match="overlap"):
        RasterConfig(overlap=1.0).validate()
    with pytest.raises(ValueError, match="combine"):
        RasterConfig(combine="median").validate()
    with pytest.raises(ValueError, match="percentiles"):
        RasterConfig(percentiles=(98, 2)).validate()


# ---------------------------------------------------------------- the main output


def test_output_is_georeferenced_like_the_input(main_run, ortho):
    summary, _ = main_run
    with rasterio.open(ortho) as src, rasterio.open(summary.output) as out:
        assert out.crs == src.crs
        assert out.transform == src.transform
        assert (out.width, out.height) == (src.width, src.height)
        assert out.count == 2
        assert out.dtypes == ("float32", "float32")
        assert out.descriptions == ("defect_probability", "gradcam")
        assert out.nodata == NODATA
        assert out.overviews(1) == [2, 4, 8] and out.overviews(2) == [2, 4, 8]
        assert out.profile["tiled"] and out.profile["blockxsize"] == 256
        assert out.compression.name.lower() == "deflate"
        assert out.tags(ns="IMAGE_STRUCTURE").get("PREDICTOR") == "3"
        assert out.tags()["tile_size"] == str(TILE)


def test_output_values_and_nodata(main_run):
    summary, _ = main_run
    assert summary.tiles == 12
    assert summary.skipped > 0  # the bottom row of tiles is mostly nodata
    assert summary.classified + summary.skipped == summary.tiles
    with rasterio.open(summary.output) as out:
        a = out.read()
    border = np.zeros((H, W), bool)
    border[:, :BORDER_LEFT] = True
    border[H - BORDER_BOTTOM :, :] = True
    assert (a[:, border] == NODATA).all()
    valid = a[0] != NODATA
    assert (valid == (a[1] != NODATA)).all()
    assert valid[100:250, 100:500].all()  # well inside: covered by classified tiles
    assert valid.mean() > 0.5
    for band in a:
        v = band[valid]
        assert v.min() >= 0.0 and v.max() <= 1.0
    assert (a[1][valid] <= a[0][valid] + 1e-6).all()  # cam x p never exceeds max p


def test_only_windows_were_read(main_run):
    _, spy = main_run
    spy.check_bounded(TILE, RasterConfig().stats_max_pixels)
    assert all(w is not None for _, w, _ in spy.calls)  # 8-bit: not even a stats read


def test_vector_polygons_in_wgs84(main_run):
    import pyogrio

    summary, _ = main_run
    assert summary.vector is not None and summary.polygons == summary.classified
    df = pyogrio.read_dataframe(summary.vector, layer="raster_defects")
    assert len(df) == summary.classified
    assert df.crs.to_epsg() == 4326
    minx, miny, maxx, maxy = df.total_bounds
    assert 8.9 < minx < maxx < 9.1 and 45.0 < miny < maxy < 45.2  # near UTM 32N (500 km, 5000 km)
    assert {"p_final", "p_stage1", "p_stage2", "decision"} <= set(df.columns)
    assert df["p_final"].between(0, 1).all()


def test_memory_budget_panels_give_the_same_output(main_run, ortho, loaded, tmp_path, monkeypatch):
    from heritage.survey import raster

    sizes: list[int] = []
    original = raster._Strip.__init__

    def record(self, *args, **kwargs):
        original(self, *args, **kwargs)
        sizes.append(self.nbytes)

    monkeypatch.setattr(raster._Strip, "__init__", record)
    spy = ReadSpy(monkeypatch)
    cfg = RasterConfig(tile_size=TILE, batch_size=32, memory_mb=3)
    summary = classify_raster(ortho, tmp_path / "low.tif", config=cfg, loaded=loaded)
    assert summary.panels == 3
    assert sizes and max(sizes) <= 3 * 2**20 / 2  # half the budget for the strips
    full_strip = (256 + TILE + 1) * W * 13
    assert full_strip > 3 * 2**20 / 2  # a full-width strip would not have fit
    spy.check_bounded(TILE, cfg.stats_max_pixels)
    with rasterio.open(main_run[0].output) as a, rasterio.open(summary.output) as b:
        np.testing.assert_allclose(a.read(), b.read(), atol=1e-5)


# ----------------------------------------------------------------- other inputs


def test_16bit_input_is_stretched_from_a_decimated_read(tmp_path, loaded, monkeypatch):
    src_path = make_raster(tmp_path / "u16.tif", 200, 150, dtype="uint16", border=(20, 0))
    spy = ReadSpy(monkeypatch)
    cfg = small_config(stats_max_pixels=5000)
    summary = classify_raster(src_path, tmp_path / "out.tif", config=cfg, loaded=loaded)
    spy.check_bounded(100, 5000)
    decimated = [c for c in spy.calls if c[1] is None]
    assert decimated, "the percentile stretch must come from a decimated read"
    assert summary.scaling is not None
    assert all(
        1000 < lo < hi < 5200
        for lo, hi in zip(summary.scaling.low, summary.scaling.high, strict=True)
    )
    with rasterio.open(summary.output) as out:
        a = out.read(1)
    assert (a[:, :20] == NODATA).all()
    assert ((a[:, 20:] >= 0) & (a[:, 20:] <= 1)).all()


def test_band_scaling_maps_percentiles_to_0_255(tmp_path):
    path = make_raster(tmp_path / "f.tif", 100, 80, dtype="float32", border=(0, 0))
    with rasterio.open(path) as src:
        sc = band_scaling(src, (1, 2, 3), (0, 100))
        data = src.read()
    assert sc is not None
    out = sc.apply(data)
    assert out.dtype == np.uint8 and out.min() == 0 and out.max() == 255
    with rasterio.open(make_raster(tmp_path / "b.tif", 50, 40)) as src:
        assert band_scaling(src, (1, 2, 3)) is None  # 8-bit: used as it is


def test_single_band_is_read_as_greyscale(tmp_path, loaded):
    path = make_raster(tmp_path / "grey.tif", 200, 150, count=1, border=(0, 0))
    summary = classify_raster(path, tmp_path / "out.tif", config=small_config(), loaded=loaded)
    with rasterio.open(summary.output) as out:
        a = out.read()
    assert out.count == 2 and summary.classified == summary.tiles == 6
    assert ((a >= 0) & (a <= 1)).all()


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_raster_without_crs_warns_and_writes_without_crs(tmp_path, loaded, caplog):
    path = make_raster(tmp_path / "nocrs.tif", 200, 150, crs=None, border=(0, 0))
    with caplog.at_level(logging.WARNING, logger="heritage.survey.raster"):
        summary = classify_raster(path, tmp_path / "out.tif", config=small_config(), loaded=loaded)
    assert any("no CRS" in r.getMessage() for r in caplog.records)
    assert summary.warnings and summary.crs is None
    with rasterio.open(summary.output) as out:
        assert out.crs is None
        assert (out.width, out.height) == (200, 150)


def test_scale_writes_a_coarser_output(tmp_path, loaded):
    path = make_raster(tmp_path / "s.tif", 200, 150, border=(20, 0))
    summary = classify_raster(
        path, tmp_path / "out.tif", config=small_config(scale=2, combine="mean"), loaded=loaded
    )
    with rasterio.open(summary.output) as out:
        assert (out.width, out.height) == (100, 75)
        assert out.transform == TRANSFORM @ TRANSFORM.scale(2)
        a = out.read(1)
    assert (a[:, :10] == NODATA).all()
    assert ((a[:, 10:] >= 0) & (a[:, 10:] <= 1)).all()


# ------------------------------------------------------------------------ errors


def test_missing_and_non_raster_inputs(tmp_path, loaded):
    with pytest.raises(InputNotFoundError, match="does not exist"):
        classify_raster(tmp_path / "nope.tif", tmp_path / "o.tif", loaded=loaded)
    bad = tmp_path / "notes.tif"
    bad.write_text("not a raster")
    with pytest.raises(DataError, match="not a raster"):
        classify_raster(bad, tmp_path / "o.tif", loaded=loaded)
    assert not (tmp_path / "o.tif").exists()


def test_missing_or_corrupt_model_fails_before_any_tile_is_read(tmp_path, monkeypatch):
    path = make_raster(tmp_path / "in.tif", 200, 150)
    spy = ReadSpy(monkeypatch)
    with pytest.raises(ModelError):
        classify_raster(path, tmp_path / "o.tif", model_dir=tmp_path / "no-model")
    model = tiny_model_dir(tmp_path / "m", model_id="tiny-raster")
    (model / "stage2.safetensors").write_bytes(b"truncated")
    with pytest.raises(ModelError, match="tampered or truncated"):
        classify_raster(path, tmp_path / "o.tif", model_dir=model)
    assert not any(w is not None for _, w, _ in spy.calls)
    assert not (tmp_path / "o.tif").exists()


def test_cancel_keeps_the_previous_output_and_leaves_no_partial_file(tmp_path, loaded):
    path = make_raster(tmp_path / "in.tif", 200, 150, border=(0, 0))
    out = tmp_path / "out.tif"
    out.write_bytes(b"previous result")

    class CancelAfterFirstBatch(NullProgress):
        def step(self, n=1, **info):
            self.cancel()

    with pytest.raises(CancelledError):
        classify_raster(
            path,
            out,
            config=small_config(batch_size=2),
            progress=CancelAfterFirstBatch(),
            loaded=loaded,
        )
    assert out.read_bytes() == b"previous result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif", "out.tif"]


def test_cli_writes_the_output_and_reports_errors(tmp_path, model_dir):
    from heritage.cli import cli

    path = make_raster(tmp_path / "in.tif", 200, 150)
    runner = CliRunner()
    args = [
        "classify-raster",
        str(path),
        "-o",
        str(tmp_path / "out.tif"),
        "--model",
        str(model_dir),
    ]
    res = runner.invoke(cli, [*args, "--tile-size", "100", "--overlap", "0.2", "--bands", "3,2,1"])
    assert res.exit_code == 0, res.output
    assert "tiles:" in res.output
    with rasterio.open(tmp_path / "out.tif") as out:
        assert out.count == 2 and out.crs.to_epsg() == 32632
    res = runner.invoke(
        cli, ["classify-raster", str(tmp_path / "missing.tif"), "-o", str(tmp_path / "x.tif")]
    )
    assert isinstance(res.exception, InputNotFoundError)
    res = runner.invoke(cli, [*args, "--bands", "1,2"])
    assert res.exit_code != 0 and isinstance(res.exception, DataError)


def test_alpha_band_and_internal_mask_mean_nodata(tmp_path, loaded):
    rgb = np.full((3, 150, 200), 170, np.uint8)
    alpha = np.full((150, 200), 255, np.uint8)
    alpha[:, :30] = 0
    path = tmp_path / "rgba.tif"
    profile = {
        "driver": "GTiff",
        "width": 200,
        "height": 150,
        "count": 4,
        "dtype": "uint8",
        "crs": "EPSG:32632",
        "transform": TRANSFORM,
        "photometric": "RGB",
        "alpha": "YES",
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.concatenate([rgb, alpha[None]]))
    masked = tmp_path / "masked.tif"
    profile.update(count=3, alpha="NO")
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(masked, "w", **profile) as dst:
        dst.write(rgb)
        dst.write_mask(alpha)
    for src_path in (path, masked):
        out = classify_raster(src_path, tmp_path / "o.tif", config=small_config(), loaded=loaded)
        with rasterio.open(out.output) as o:
            a = o.read(1)
        assert (a[:, :30] == NODATA).all(), src_path.name
        assert ((a[:, 30:] >= 0) & (a[:, 30:] <= 1)).all(), src_path.name


def test_raster_smaller_than_a_tile_and_all_nodata_raster(tmp_path, loaded):
    tiny = make_raster(tmp_path / "tiny.tif", 50, 40, border=(0, 0))
    summary = classify_raster(tiny, tmp_path / "a.tif", config=RasterConfig(), loaded=loaded)
    assert summary.tiles == summary.classified == 1
    with rasterio.open(summary.output) as out:
        a = out.read()
        assert (out.width, out.height) == (50, 40) and out.overviews(1) == []
    assert ((a >= 0) & (a <= 1)).all()
    empty = make_raster(tmp_path / "empty.tif", 200, 150, border=(200, 0))
    summary = classify_raster(empty, tmp_path / "b.tif", config=small_config(), loaded=loaded)
    assert summary.classified == 0 and summary.skipped == summary.tiles
    with rasterio.open(summary.output) as out:
        assert (out.read() == NODATA).all()


def test_truncated_raster_is_one_line_that_says_what_to_do(tmp_path, loaded):
    """Issue 25 item 5: a truncated GeoTIFF gave a RasterioIOError traceback."""
    whole = make_raster(tmp_path / "whole.tif", 300, 200, border=(0, 0))
    cut = tmp_path / "cut.tif"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(DataError, match="truncated or damaged; copy it again") as err:
        classify_raster(cut, tmp_path / "out.tif", config=small_config(), loaded=loaded)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out.tif").exists()


def test_crs_without_geotransform_is_refused(tmp_path, loaded):
    """Issue 25 item 7: a raster with a CRS but no geotransform was accepted in silence."""
    path = make_raster(tmp_path / "nogt.tif", 200, 150, crs=None, border=(0, 0))
    with rasterio.open(path, "r+") as ds:
        ds.crs = "EPSG:32632"
    with pytest.raises(DataError, match=r"has a CRS \(EPSG:32632\) but no georeferencing"):
        classify_raster(path, tmp_path / "out.tif", config=small_config(), loaded=loaded)
