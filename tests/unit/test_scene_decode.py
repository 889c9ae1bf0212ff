"""Scene mode's decoding: the decoding thread hands the model the working image, and the
photo's answer (strongest-tile box in the photo's own pixels, thumbnail) is the same as
when the model reduced the full-size photo itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from heritage.kernel.records import Photo
from heritage.model.card import load_model
from heritage.model.predict import load_survey_image
from heritage.survey.classify import (
    ClassifyConfig,
    DecodeSize,
    classify_batch,
    decode_photo,
    decode_sides,
    make_classifier,
    scene_classifier,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def noise_jpeg(path: Path, size: tuple[int, int]) -> Path:
    rng = np.random.default_rng(7)
    small = rng.integers(0, 255, (size[1] // 16, size[0] // 16, 3), dtype=np.uint8)
    Image.fromarray(small).resize(size, Image.Resampling.BILINEAR).save(path, quality=92)
    return path


def test_scene_decoding_gives_the_working_image_and_the_same_box(
    flag_model: Path, tmp_path: Path
) -> None:
    path = noise_jpeg(tmp_path / "wall.jpg", (3000, 2250))
    cfg = ClassifyConfig((tmp_path,), tmp_path / "s.gpkg", model_dir=flag_model, device="cpu")
    clf = make_classifier(load_model(flag_model), "cpu")
    try:
        sides = decode_sides(cfg, clf.card)
        assert sides == DecodeSize(None, 2016, 2016)  # the card's (default) working size
        decoded = decode_photo(path, sides)
        assert not isinstance(decoded, str) and decoded.size == (2016, 1512)
        # the model on the full-size photo reduces it itself: its box is in photo pixels
        full = scene_classifier(clf, cfg).classify(load_survey_image(path))
        photo = Photo(str(path), "ab" * 32, width=3000, height=2250)
        (outcome,) = classify_batch(clf, [photo], cfg, tmp_path / "overlays", [decoded])
    finally:
        clf.close()
    answer = outcome.answer
    assert answer is not None and outcome.paths is not None
    assert full.best_box is not None and answer.best_box == full.best_box
    assert max(answer.best_box) > 2016  # scaled back beyond the working image
    assert (answer.n_tiles, answer.p_final) == (full.n_tiles, full.p_final)
    with Image.open(outcome.paths[2]) as thumb:
        assert thumb.size == (480, 360)


def test_decode_size_accepts_the_older_pairs_and_reports_unreadable_files(
    tmp_path: Path,
) -> None:
    path = noise_jpeg(tmp_path / "p.jpg", (800, 600))
    image = decode_photo(path, (None, 200))  # (min_side, min_long_side): draft only
    assert not isinstance(image, str) and image.size == (200, 150)  # JPEG draft at 1/4
    reduced = decode_photo(path, DecodeSize(None, 500, 500))  # no draft, then reduced
    assert not isinstance(reduced, str) and reduced.size == (500, 375)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not a jpeg")
    assert decode_photo(broken, DecodeSize(None, 200, 300)).startswith(
        "the image cannot be decoded"
    )
