"""Scene mode (heritage.model.scene) and the wall gate (heritage.model.wallgate) with a tiny
random model.

Shapes, boxes, the close-up rule (same answer as whole-image mode), the gate's effect
(a photo without a wall tile is not_assessable and never flagged) and the gate's own
fitting, storage and refusal of bad arrays. The real-model check (a real defect patch
pasted into a real facade photo is found) is in test_scene_shipped.py.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from heritage.kernel.errors import ModelError
from heritage.model.card import load_model
from heritage.model.predict import TwoStageClassifier
from heritage.model.scene import (
    DECISION_NOT_ASSESSABLE,
    MODE_CLOSE_UP,
    MODE_SCENE,
    SceneClassifier,
    even_batches,
    greyed,
    working_image,
)
from heritage.model.scenesettings import SceneSettings
from heritage.model.wallgate import (
    WallGate,
    fit_wall_gate,
    load_gate,
    save_gate,
    with_quantile_threshold,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def clf(flag_model):
    """The tiny model with a stage-1 decision (threshold 0: every wall tile is flagged)."""
    loaded = load_model(flag_model)
    card = dataclasses.replace(loaded.card, decision_stage="stage1")
    loaded = dataclasses.replace(loaded, card=card)
    c = TwoStageClassifier(loaded, device="cpu")
    yield c
    c.close()


def photo(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))


SMALL = SceneSettings(tile_size=64, overlap=0.5, max_side=256, close_up_side=128, batch_size=8)


def test_tiles_cover_the_photo_and_pictures_keep_its_aspect(clf) -> None:
    with SceneClassifier(clf, SMALL) as scene:
        r = scene.classify(photo(200, 150))
    assert r.mode == MODE_SCENE
    # stride 32 over 200 x 150: x starts 0..128 + 136, y starts 0..64 + 86
    assert r.n_tiles == len(r.windows) == 6 * 4
    covered = np.zeros((150, 200), bool)
    for left, top, right, bottom in r.windows:
        covered[top:bottom, left:right] = True
    assert covered.all()
    assert r.heatmap.shape == (150, 200) and r.overlay.shape == (150, 200, 3)
    assert r.n_wall_tiles == r.n_tiles  # no gate: every tile is wall
    assert r.n_flagged_tiles == r.n_tiles and r.flagged  # threshold 0
    assert r.decision == "conservation_needed"
    assert r.p_final == pytest.approx(max(r.tile_p))
    left, top, right, bottom = r.best_box
    assert 0 <= left < right <= 200 and 0 <= top < bottom <= 150


def test_large_photo_is_reduced_and_the_box_is_in_its_own_pixels(clf) -> None:
    with SceneClassifier(clf, SMALL) as scene:
        r = scene.classify(photo(1024, 512))
    assert r.scale == pytest.approx(4.0)
    assert r.heatmap.shape == (128, 256)
    left, top, right, bottom = r.best_box
    assert right - left == 64 * 4 and bottom - top == 64 * 4
    assert right <= 1024 and bottom <= 512


def test_close_up_is_whole_image_mode(clf) -> None:
    im = photo(180, 120, seed=3)  # shorter side below close_up_side: one close-up
    with SceneClassifier(clf, SMALL) as scene:
        r = scene.classify(im)
    whole = clf.classify([im])[0]
    assert r.mode == MODE_CLOSE_UP and r.n_tiles == 1
    assert r.p_final == pytest.approx(whole.p_final, abs=1e-6)
    assert np.array_equal(r.overlay, whole.overlay)
    assert r.best_box == (30, 0, 150, 120)  # the centre square the model sees


def test_photo_without_wall_tiles_is_not_assessable(clf) -> None:
    with SceneClassifier(clf, SMALL) as scene:
        feats = scene.score_tiles([np.zeros((64, 64, 3), np.uint8)])[1]
    d = feats.shape[1]
    # a gate that scores every tile 0: nothing is a wall surface
    gate = WallGate(np.zeros(d), np.ones(d), np.eye(2, d), np.zeros(2), -50.0, threshold=0.5)
    with SceneClassifier(clf, SMALL, gate) as scene:
        r = scene.classify(photo(200, 150))
        close = scene.classify(photo(100, 100))
    gated = dataclasses.replace(SMALL, gate_close_ups=True)
    with SceneClassifier(clf, gated, gate) as scene:
        close_gated = scene.classify(photo(100, 100))
    assert r.decision == DECISION_NOT_ASSESSABLE and not r.flagged
    assert r.n_wall_tiles == 0 and r.n_flagged_tiles == 0 and r.best_box is None
    assert r.p_final == 0.0 and not r.heatmap.any()
    # a close-up is judged as in whole-image mode, without the gate (unless asked)
    assert close.decision == "conservation_needed" and close.n_wall_tiles == 1
    assert close_gated.decision == DECISION_NOT_ASSESSABLE and not close_gated.flagged
    # the overlay greys out what was not judged: no saturated colour left
    sat = r.overlay.max(axis=2).astype(int) - r.overlay.min(axis=2)
    assert sat.max() < 100


def test_greyed_is_the_documented_fade_to_a_grey_of_each_pixels_brightness() -> None:
    rgb = np.random.default_rng(3).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    mean = rgb.mean(axis=2, keepdims=True)
    expected = 0.35 * rgb + 0.65 * (0.6 * mean + 90)  # GREY_KEEP of the pixel, the rest grey
    got = greyed(rgb)
    assert got.dtype == np.uint8 and got.shape == rgb.shape
    assert np.abs(got - np.floor(expected)).max() <= 1  # float32 rounding only
    assert np.abs(got - np.floor(expected)).mean() < 0.1
    # a saturated colour loses most of its saturation
    red = greyed(np.array([[[255, 0, 0]]], dtype=np.uint8))[0, 0].astype(int)
    assert red.max() - red.min() < 0.4 * 255


@pytest.mark.parametrize("n,most", [(61, 12), (64, 32), (1, 12), (12, 12), (13, 12), (5, 1)])
def test_even_batches_cover_every_tile_once_in_the_fewest_near_equal_batches(n, most) -> None:
    bounds = even_batches(n, most)
    sizes = [stop - start for start, stop in bounds]
    assert [i for a, b in bounds for i in range(a, b)] == list(range(n))
    assert len(bounds) == -(-n // most) and max(sizes) <= most and max(sizes) - min(sizes) <= 1
    assert even_batches(0, 12) == []


def test_min_flagged_tiles_rule(clf) -> None:
    many = dataclasses.replace(SMALL, min_flagged_tiles=1000)
    with SceneClassifier(clf, many) as scene:
        r = scene.classify(photo(200, 150))
    assert r.n_flagged_tiles == r.n_tiles and not r.flagged and r.decision == "not_flagged"


def test_settings_refuse_nonsense() -> None:
    with pytest.raises(ModelError, match="tile_threshold"):
        SceneSettings(tile_threshold=float("nan"))
    with pytest.raises(ModelError, match="max_side"):
        SceneSettings(tile_size=224, max_side=300)
    with pytest.raises(ModelError, match="gate_file"):
        SceneSettings(gate_file="gate.safetensors")
    with pytest.raises(ModelError, match="must be an object"):
        SceneSettings.from_card([1, 2])
    assert SceneSettings.from_card({"overlap": 0.25, "future_key": 1}).overlap == 0.25


def test_working_image() -> None:
    im, s = working_image(photo(300, 100), 150)
    assert im.size == (150, 50) and s == pytest.approx(2.0)
    im, s = working_image(photo(100, 80), 150)
    assert im.size == (100, 80) and s == 1.0


# ------------------------------------------------------------------ the gate


def _walls_and_scenes(n: int = 300, d: int = 16, seed: int = 0):
    rng = np.random.default_rng(seed)
    walls = rng.normal(0, 1, (n, d)) + 3.0
    scenes = rng.normal(0, 1, (n, d)) - 3.0
    return walls, scenes


def test_wall_gate_separates_and_keeps_the_quantile() -> None:
    walls, scenes = _walls_and_scenes()
    gate = fit_wall_gate(walls[:200], scenes[:200], n_components=8)
    gate = with_quantile_threshold(gate, walls[200:], 0.02)
    assert gate.is_wall(walls[200:]).mean() >= 0.98
    held_walls, held_scenes = _walls_and_scenes(seed=1)
    assert gate.is_wall(held_walls).mean() > 0.9
    assert gate.is_wall(held_scenes).mean() < 0.05
    with pytest.raises(ValueError, match="features must be"):
        gate.scores(np.zeros((2, 3)))


def test_gate_round_trip_and_refusals(tmp_path: Path) -> None:
    walls, scenes = _walls_and_scenes()
    gate = with_quantile_threshold(fit_wall_gate(walls, scenes, 8), walls, 0.01)
    sha = save_gate(gate, tmp_path / "g.safetensors")
    data = (tmp_path / "g.safetensors").read_bytes()
    assert hashlib.sha256(data).hexdigest() == sha
    back = load_gate(data, gate.threshold)
    assert np.allclose(back.scores(walls), gate.scores(walls), atol=1e-5)
    with pytest.raises(ModelError, match="not readable"):
        load_gate(b"garbage", 0.5)
    arrays = gate.arrays()
    arrays["coef"][0] = np.nan
    with pytest.raises(ModelError, match="non-finite"):
        WallGate.from_arrays(arrays, 0.5)
    with pytest.raises(ModelError, match="threshold"):
        WallGate.from_arrays(gate.arrays(), float("nan"))
    with pytest.raises(ModelError, match="threshold"):
        WallGate.from_arrays(gate.arrays(), 1.5)
    bad = gate.arrays()
    bad["coef"] = bad["coef"][:3]
    with pytest.raises(ModelError, match="do not fit"):
        WallGate.from_arrays(bad, 0.5)
    del bad["intercept"]
    with pytest.raises(ModelError, match="lacks"):
        WallGate.from_arrays(bad, 0.5)


def test_an_older_survey_gets_the_scene_columns_and_keeps_its_rows(tmp_path: Path) -> None:
    import pyogrio
    import shapely

    from heritage.io.gpkg import Field, LayerSchema, append_batch
    from heritage.kernel.errors import DataError
    from heritage.survey.pipeline import LATER_FIELDS, OBSERVATION_FIELDS, observations_schema

    out = tmp_path / "old.gpkg"
    old_fields = tuple(f for f in OBSERVATION_FIELDS if f.name not in LATER_FIELDS)
    old = LayerSchema("observations", old_fields, "Point", "EPSG:4326")
    append_batch(out, old, [{"file_name": "a.jpg", "sha256": "a" * 64}], [shapely.Point(11, 43)])
    new_row = {"file_name": "b.jpg", "sha256": "b" * 64, "n_wall_tiles": 3, "best_box_left": 7}
    append_batch(out, observations_schema(), [new_row], [shapely.Point(11.1, 43.1)])
    obs = pyogrio.read_dataframe(out, layer="observations")
    assert list(obs["file_name"]) == ["a.jpg", "b.jpg"]
    assert obs["n_wall_tiles"].isna().tolist() == [True, False]
    assert int(obs["best_box_left"].iloc[1]) == 7
    # a column that was never added later is still refused
    other = LayerSchema("observations", (*old_fields, Field("not_ours")), "Point")
    with pytest.raises(DataError, match="not_ours"):
        append_batch(out, other, [], [])


def test_a_layer_with_our_columns_in_another_order_is_refused(tmp_path: Path) -> None:
    import shapely

    from heritage.io.gpkg import Field, LayerSchema, append_batch
    from heritage.kernel.errors import DataError

    out = tmp_path / "swapped.gpkg"
    swapped = LayerSchema("t", (Field("b"), Field("a")), "Point")
    append_batch(out, swapped, [{"a": "1", "b": "2"}], [shapely.Point(0, 0)])
    ours = LayerSchema("t", (Field("a"), Field("b")), "Point")
    with pytest.raises(DataError, match="another order"):
        append_batch(out, ours, [{"a": "3", "b": "4"}], [shapely.Point(0, 0)])


def test_neighbours_shift_a_quarter_tile_inside_the_image() -> None:
    st = SceneSettings(tile_size=64, max_side=256, close_up_side=128)
    inner = st.neighbours((64, 64, 128, 128), 256, 256)
    assert len(inner) == 8 and (48, 48, 112, 112) in inner and (80, 80, 144, 144) in inner
    corner = st.neighbours((0, 0, 64, 64), 256, 256)  # shifts outside are clipped, deduplicated
    assert sorted(corner) == [(0, 16, 64, 80), (16, 0, 80, 64), (16, 16, 80, 80)]


def test_refinement_scores_shifted_windows_around_candidates(clf) -> None:
    refine = dataclasses.replace(SMALL, refine_candidates=2, refine_min_p=0.0)
    im = photo(200, 150)
    with SceneClassifier(clf, SMALL) as scene:
        plain = scene.classify(im)
    with SceneClassifier(clf, refine) as scene:
        r = scene.classify(im)
    assert r.n_tiles > plain.n_tiles and len(r.windows) == len(r.tile_p) == r.n_tiles
    assert r.windows[: plain.n_tiles] == plain.windows
    assert len(set(r.windows)) == len(r.windows)
    nobody = dataclasses.replace(refine, refine_min_p=1.0)  # no tile reaches p = 1
    with SceneClassifier(clf, nobody) as scene:
        assert scene.classify(im).n_tiles == plain.n_tiles


def test_tile_pass_matches_the_network_in_float32(clf) -> None:

    from heritage.model.preprocess import normalise, to_model_rgb

    rgbs = [to_model_rgb(photo(64, 64, seed=s), 64) for s in range(3)]
    fp32 = dataclasses.replace(SMALL, precision="float32")
    with SceneClassifier(clf, fp32) as scene:
        p, _ = scene.score_tiles(rgbs)
    with torch.inference_mode():
        logits = clf.stage1(normalise(rgbs))
    want = torch.softmax(logits, -1)[:, list(clf.positive_idx)].sum(1).numpy()
    np.testing.assert_allclose(p, want, atol=1e-5)


def test_precision_auto_is_float32_off_the_cpu() -> None:
    from heritage.model.scene import resolve_precision

    assert resolve_precision("auto", "cuda") == "float32"
    assert resolve_precision("float32", "cpu") == "float32"
    assert resolve_precision("auto", "cpu") in {"float32", "bfloat16"}
    with pytest.raises(ModelError, match="precision"):
        SceneSettings(precision="half")
