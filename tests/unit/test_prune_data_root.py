"""``heritage prune`` without ``--run-dir``: the card's data sets found by name under
``--data-root`` (or ``$HERITAGE_DATA_ROOT``), checked by fingerprint; without any of the
three, an error that says what to pass."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from factories import image_folder, tiny_card, tiny_model_dir
from PIL import Image

from heritage.kernel.errors import DataError
from heritage.training import data as D
from heritage.training.prune import PruneConfig, _split_items


def _trained(tmp_path: Path) -> tuple[Path, dict]:
    """Data as a training saw it (a data set and an extra-positives folder inside a data
    set with its masks beside) and the ``training`` section its card records."""
    root = tmp_path / "train-machine"
    image_folder(root, "dsA")
    pos = root / "pos"
    for sub in ("images", "masks"):
        (pos / sub).mkdir(parents=True)
        for i in range(4):
            a = np.full((40, 40, 3), 40 * i + (0 if sub == "images" else 5), np.uint8)
            Image.fromarray(a).save(pos / sub / f"p{i}.png")
    (pos / "manifest.csv").write_text("file,label\n")
    settings = D.SplitSettings(
        data_dirs=(str(root / "dsA"),), extra_positives=(str(pos / "images"),)
    )
    items, _ = D.make_or_load_split(settings, tmp_path / "train-run")
    training = {
        "datasets": D.dataset_records(items, settings),
        "split": {"fingerprint": D.split_fingerprint(items)},
        "config": {"seed": 0, "val_fraction": 0.1, "test_fraction": 0.2,
                   "extra_positives": ["../data/pos/images"]},
    }  # fmt: skip
    return root, training


def test_the_cards_data_sets_are_found_by_name_and_checked(tmp_path):
    root, training = _trained(tmp_path)
    assert [(r["name"], r["role"]) for r in training["datasets"]] == [
        ("dsA", "data"),
        ("pos", "extra_positives"),
    ]
    card = tiny_card(labels=("crack", "no_crack"), training=training)
    moved = tmp_path / "elsewhere"  # another machine: the same data sets, another folder
    shutil.copytree(root, moved)
    items, source = _split_items(PruneConfig("m", "o", data_root=str(moved)), card, tmp_path / "w")
    assert D.split_fingerprint(items) == training["split"]["fingerprint"]
    assert f"the data sets under {moved}" in source
    assert {it.data_dir for it in items} == {
        (moved / "dsA").resolve(),
        (moved / "pos/images").resolve(),
    }

    # another copy of a data set (one image changed) is named, before any split is written
    Image.new("RGB", (40, 40), "white").save(moved / "dsA" / "crack" / "crack_00.png")
    with pytest.raises(DataError, match=r"data set 'dsA' in .* is not the one the model was"):
        _split_items(PruneConfig("m", "o", data_root=str(moved)), card, tmp_path / "w2")
    assert not (tmp_path / "w2" / D.SPLIT_CSV).exists()
    # a data set missing under the root: the folder it looked for
    shutil.rmtree(moved / "pos")
    with pytest.raises(DataError, match=r"no folder .*pos/images for the model's data set 'pos'"):
        _split_items(PruneConfig("m", "o", data_root=str(moved)), card, tmp_path / "w3")


def test_data_alone_cannot_name_the_extra_positives_and_says_what_to_pass(tmp_path):
    root, training = _trained(tmp_path)
    card = tiny_card(labels=("crack", "no_crack"), training=training)
    cfg = PruneConfig("m", "o", data_dirs=(str(root / "dsA"),))
    with pytest.raises(DataError, match=r"extra positives of pos, which --data cannot name: "
                       r"give --data-root ROOT"):  # fmt: skip
        _split_items(cfg, card, tmp_path / "w")
    assert not (tmp_path / "w" / D.SPLIT_CSV).exists()


def test_without_run_dir_data_or_root_the_error_says_what_to_pass(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from heritage.cli import cli
    from heritage.cli.prune import prune

    _, training = _trained(tmp_path)
    model = tiny_model_dir(tmp_path / "m", labels=("crack", "no_crack"), training=training)
    monkeypatch.delenv(D.DATA_ROOT_ENV, raising=False)
    res = CliRunner().invoke(
        cli, ["prune", str(model), "-o", str(tmp_path / "o"), "--device", "cpu"]
    )
    msg = str(res.exception)
    assert res.exit_code != 0 and "give --run-dir RUN_DIR" in msg and "--data to recreate" in msg
    assert "--data-root ROOT (or $HERITAGE_DATA_ROOT)" in msg and "data sets dsA, pos" in msg
    assert "ROOT/<name>/<class>/<image>" in msg
    # the setting is read from the environment too
    monkeypatch.setenv(D.DATA_ROOT_ENV, str(tmp_path))
    ctx = prune.make_context("prune", [str(model), "-o", str(tmp_path / "o")])
    assert ctx.params["data_root"] == str(tmp_path)
    # a version-1 card names no data sets: say so
    with pytest.raises(DataError, match="names no data sets"):
        _split_items(PruneConfig("m", "o", data_root=str(tmp_path)), tiny_card(), tmp_path / "w")
