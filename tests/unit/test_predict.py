"""Two-stage inference on a tiny saved model: sane results, a bad file, same preprocessing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from factories import tiny_model_dir
from PIL import Image

from heritage.model.card import load_model
from heritage.model.predict import Result, TwoStageClassifier, load_image
from heritage.model.preprocess import eval_transform, normalise, to_model_rgb

LABELS = ("crack", "no_crack", "salt_damage")
SIZE = 64


def photo(seed: int, size=(90, 70), mode="RGB") -> Image.Image:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(arr).convert(mode)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return tiny_model_dir(tmp_path_factory.mktemp("model") / "m", stage2="mobilenet_v3_small")


@pytest.fixture(scope="module")
def clf(model_dir):
    with TwoStageClassifier(load_model(model_dir)) as c:
        yield c


def test_preprocess_in_two_steps_matches_eval_transform():
    im = photo(0, (100, 60))
    a = eval_transform(SIZE)(im)
    b = normalise([to_model_rgb(im, SIZE)])[0]
    assert a.shape == (3, SIZE, SIZE)
    assert torch.allclose(a, b, atol=1e-6)


def test_classify_gives_sane_results(clf):
    images = [photo(1), photo(2, (50, 120)), photo(3, mode="L"), photo(4, mode="RGBA")]
    results = clf.classify(images)
    assert len(results) == 4
    for r in results:
        assert isinstance(r, Result)
        assert abs(sum(r.stage1.probabilities.values()) - 1.0) < 1e-4
        assert r.stage1.label in LABELS
        expected = r.stage1.probabilities["crack"] + r.stage1.probabilities["salt_damage"]
        assert r.p_stage1 == pytest.approx(expected, abs=1e-5)
        assert r.p_stage2 is not None and 0.0 <= r.p_stage2 <= 1.0
        assert r.p_final == r.p_stage2  # decision_stage == "stage2"
        assert r.decision == (r.p_final >= 0.5)
        assert r.cam.shape == (SIZE, SIZE) and r.cam.dtype == np.float32
        assert r.cam.min() >= 0.0 and r.cam.max() <= 1.0
        assert r.overlay.shape == (SIZE, SIZE, 3) and r.overlay.dtype == np.uint8
        assert r.cam_method in ("gradcam", "eigencam")
        assert r.cam_layer == "features.12"


def test_stage2_sees_the_overlay_it_reports(clf):
    r = clf.classify([photo(5)])[0]
    x2 = normalise([r.overlay], clf.card.mean, clf.card.std)
    with torch.inference_mode():
        p = torch.sigmoid(clf.stage2(x2)).item()
    assert p == pytest.approx(r.p_stage2, abs=1e-5)


def test_stage1_probabilities_equal_a_plain_forward_pass(clf):
    """classify() takes the stage-1 scores from the CAM's forward pass (one pass, not
    two): they must be what the network gives on its own."""
    images = [photo(8), photo(9, (40, 90))]
    results = clf.classify(images)
    with torch.inference_mode():
        probs = torch.softmax(clf.stage1(clf.preprocess(images)), dim=-1).numpy()
    for r, p in zip(results, probs, strict=True):
        got = [r.stage1.probabilities[lab] for lab in LABELS]
        np.testing.assert_allclose(got, p, atol=1e-5)
        assert r.stage1.label == LABELS[int(p.argmax())]


def test_stage1_only_model_and_threshold(tmp_path):
    d = tiny_model_dir(tmp_path / "one", stage2=None, threshold=0.0)
    with TwoStageClassifier(load_model(d), cam_method="eigencam") as clf:
        (r,) = clf.classify([photo(6)])
    assert r.p_stage2 is None
    assert r.p_final == r.p_stage1
    assert r.decision is True  # threshold 0
    assert r.cam_method in ("eigencam", "gradcam")


def test_positive_cam_target(model_dir):
    with TwoStageClassifier(load_model(model_dir), cam_target="positive") as clf:
        (r,) = clf.classify([photo(7)])
    assert r.cam.shape == (SIZE, SIZE)


def test_classify_paths_survives_a_corrupt_file(clf, tmp_path):
    paths = []
    for i in range(5):
        p = tmp_path / f"img{i}.jpg"
        photo(10 + i).save(p)
        paths.append(p)
    (tmp_path / "img2.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    (tmp_path / "gone.jpg").unlink(missing_ok=True)
    paths.append(tmp_path / "gone.jpg")
    out = list(clf.classify_paths(paths, batch_size=2))
    assert [p for p, _ in out] == paths
    kinds = [isinstance(r, Result) for _, r in out]
    assert kinds == [True, True, False, True, True, False]
    assert "unreadable" in out[2][1]


def test_load_image_applies_exif_orientation(tmp_path):
    im = photo(20, (80, 40))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    p = tmp_path / "rot.jpg"
    im.save(p, exif=exif)
    assert load_image(p).size == (40, 80)
    assert load_image(p).mode == "RGB"
