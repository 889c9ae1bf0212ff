"""The shipped model in scene mode on real photos (a small version of scripts/eval_scenes.py).

A real test-split defect patch (Dais masonry crack, SaltSpot salt damage) pasted at its
native scale into a real held-out facades-spb photo is found when the photo is flagged and
the box of its strongest tile overlaps the patch. The same photos without the patch
are checked too, so a model that flags everything cannot pass.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from conftest import load_script
from helpers import one_torch_thread

from heritage.model.card import load_model
from heritage.model.predict import load_image
from heritage.model.scene import load_scene_classifier
from heritage.survey.classify import make_classifier

pytestmark = pytest.mark.slow
N_PASTES = 5


@pytest.fixture(scope="module")
def eval_scenes():
    return load_script("eval_scenes")


@pytest.fixture(scope="module")
def scene():
    with one_torch_thread():
        clf = make_classifier(load_model(), "cpu")
        yield load_scene_classifier(clf)
        clf.close()


def test_the_shipped_card_has_a_wall_gate(scene) -> None:
    assert scene.gate is not None
    assert scene.settings.gate_quantile is not None and scene.settings.max_tiles >= 1


def test_pasted_defects_are_found_in_held_out_facades(
    scene, eval_scenes, shared_data: Path, tmp_path: Path
) -> None:
    photos = eval_scenes.facades(held_out=True)[:N_PASTES]
    items = eval_scenes.test_split(tmp_path)
    dais = sorted(p for p, d, c in items if d == "dais-masonry")
    salt = sorted(p for p, d, c in items if d == "saltspot-salt-damage" and c == "salt_damage")
    rng = random.Random(7)
    patches = rng.sample(dais, 3) + rng.sample(salt, N_PASTES - 3)
    found = clean_flags = 0
    for photo, patch_path in zip(photos, patches, strict=True):
        im = load_image(photo)
        clean_flags += scene.classify(im).flagged
        patch = load_image(patch_path)
        x = rng.randrange(0, im.width - patch.width + 1)
        y = rng.randrange(0, im.height - patch.height + 1)
        im.paste(patch, (x, y))
        r = scene.classify(im)
        box = r.best_box
        overlaps = (
            box is not None
            and box[0] < x + patch.width
            and x < box[2]
            and box[1] < y + patch.height
            and y < box[3]
        )
        found += bool(r.flagged and overlaps)
    # issue 19 asks for 80 %; scripts/eval_scenes.py measures 65 % (Dais) and 70 % (SaltSpot)
    # on 103 held-out photos each (docs/evaluation/scenes.md), so this small version guards
    # that level (3 of 5) against a regression rather than claiming the target
    assert found >= 3, f"found {found} of {N_PASTES} pasted defects"
    assert clean_flags <= 1, f"{clean_flags} of {N_PASTES} intact facades flagged"


def test_shipped_model_is_small_and_holds_no_machine_path() -> None:
    from heritage.model.card import default_model_dir

    folder = default_model_dir()
    total = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
    assert total <= 40 * 2**20, f"{total / 2**20:.1f} MiB"
    text = (folder / "model.json").read_text(encoding="utf-8")
    assert '"/' not in text, "the card holds an absolute path"
    card = json.loads(text)
    scene = card["scene"]
    keys = ("tile_size", "overlap", "max_side", "max_tiles", "close_up_side", "tile_threshold")
    keys += ("min_flagged_tiles", "gate_threshold", "gate_quantile", "gate_sha256")
    for key in keys:
        assert scene.get(key) is not None, key
