"""Data indexing, de-duplication, grouped stratified splitting and the torch dataset."""

from __future__ import annotations

import csv
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from heritage.kernel.errors import DataError
from heritage.model.preprocess import eval_transform
from heritage.training import data as D


def _image(path: Path, crack: bool, seed: int, size: int = 40) -> None:
    rng = np.random.default_rng(seed)
    a = rng.normal(150, 20, (size, size, 3)).clip(0, 255).astype(np.uint8)
    if crack:  # a dark vertical line
        x = int(rng.integers(5, size - 8))
        a[:, x : x + 3] = 20
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path)


def make_folder(root: Path, name: str, n: int = 12, groups: bool = False, seed: int = 0) -> Path:
    """``root/name/{crack,no_crack}/*.png``; with ``groups`` a manifest with source_group."""
    rows = []
    for c, cls in enumerate(("crack", "no_crack")):
        for i in range(n):
            rel = f"{cls}/{cls}_{i:02d}.png"
            _image(root / name / rel, cls == "crack", seed * 1000 + c * 100 + i)
            rows.append((rel, cls, f"photo{i // 3}"))  # 4 groups of 3 per class
    if groups:
        with open(root / name / "manifest.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["file", "label", "sha256", "source_group"])
            w.writerows((r, lab, "x", g) for r, lab, g in rows)
    return root / name


@pytest.fixture
def two_sets(tmp_path) -> tuple[Path, Path]:
    return make_folder(tmp_path, "dsA", groups=True), make_folder(tmp_path, "dsB", seed=1)


def _settings(*dirs: Path, **kw) -> D.SplitSettings:
    return D.SplitSettings(data_dirs=tuple(str(d) for d in dirs), **kw)


def test_scan_reads_classes_sha256_and_manifest_groups(two_sets):
    a, b = two_sets
    items_a = D.scan_image_folder(a)
    assert {it.label for it in items_a} == {"crack", "no_crack"}
    assert len(items_a) == 24 and all(it.dataset == "dsA" for it in items_a)
    first = next(it for it in items_a if it.rel == "crack/crack_04.png")
    assert first.group == "photo1"
    assert first.sha256 == D.sha256_file(first.path)
    items_b = D.scan_image_folder(b)
    assert len({it.group for it in items_b}) == 24  # no manifest: one group per file


def test_duplicates_dropped_and_label_conflicts_removed(two_sets, tmp_path):
    a, b = two_sets
    shutil.copy(a / "crack" / "crack_00.png", b / "crack" / "copy_same_label.png")
    shutil.copy(a / "no_crack" / "no_crack_00.png", b / "crack" / "copy_other_label.png")
    items, report = D.collect_items(_settings(a, b))
    assert report.files_in == 50
    assert report.duplicates_dropped == 1
    assert report.conflicts_dropped == 2  # both copies of the conflicting file
    assert len(items) == 47
    assert len({it.sha256 for it in items}) == len(items)


def test_split_is_stratified_grouped_and_reproducible(two_sets):
    a, b = two_sets
    items, _ = D.collect_items(_settings(a, b))
    split = D.split_items(items, 0.1, 0.2, seed=3)
    where = defaultdict(set)
    for it in split:
        where[(it.dataset, it.group)].add(it.split)
    assert all(len(s) == 1 for s in where.values()), "a group spans two splits"
    counts = D.split_counts(split)
    assert set(counts) == {"dsA/crack", "dsA/no_crack", "dsB/crack", "dsB/no_crack"}
    for stratum, per in counts.items():
        assert all(per[s] > 0 for s in D.SPLITS), (stratum, per)
    n_test = sum(it.split == "test" for it in split)
    assert 0.1 <= n_test / len(split) <= 0.35
    again = D.split_items(items, 0.1, 0.2, seed=3)
    assert [it.split for it in again] == [it.split for it in split]
    other = D.split_items(items, 0.1, 0.2, seed=4)
    assert [it.split for it in other] != [it.split for it in split]


def test_split_csv_round_trip_reuse_and_refusal(two_sets, tmp_path):
    a, b = two_sets
    run = tmp_path / "run"
    settings = _settings(a, b, seed=1)
    items, info = D.make_or_load_split(settings, run)
    assert not info["reused"]
    with open(run / "split.csv", newline="") as fh:
        header = next(csv.reader(fh))
    assert header[:6] == ["path", "dataset", "class", "sha256", "group", "split"]
    loaded = D.load_split(run)
    assert [(it.path, it.split, it.group) for it in loaded] == [
        (it.path, it.split, it.group) for it in items
    ]
    again, info = D.make_or_load_split(settings, run)
    assert info["reused"] and [it.split for it in again] == [it.split for it in items]
    with pytest.raises(DataError, match="other data or settings"):
        D.make_or_load_split(_settings(a, b, seed=2), run)


def test_extra_positives_in_dais_layout(two_sets, tmp_path):
    a, _ = two_sets
    dais = tmp_path / "dais-like"
    for i in range(6):
        _image(dais / "images" / "crack" / f"a_{i}_1.png", True, 500 + i)
    (dais / "manifest.csv").write_text("file,label\nimages/crack/a_0_1.png,crack\n")
    items, _ = D.collect_items(
        _settings(a, extra_positives=(str(dais / "images"),), extra_positive_class="crack")
    )
    extra = [it for it in items if it.dataset == "dais-like"]
    assert len(extra) == 6
    assert {it.label for it in extra} == {"crack"}
    assert len({it.group for it in extra}) == 6  # grouped per file
    assert extra[0].rel.startswith("crack/")


def test_cap_per_class_and_bad_fractions(two_sets):
    a, b = two_sets
    items, _ = D.collect_items(_settings(a, b, max_per_class=5))
    assert len(items) == 20
    with pytest.raises(DataError):
        D.split_items(items, 0.5, 0.6)


def test_dataset_transforms_cache_and_exif(two_sets, tmp_path):
    a, _ = two_sets
    items = D.scan_image_folder(a)[:4]
    classes = D.class_names(items)
    plain = D.stage1_dataset(items, classes, eval_transform(32))
    cached = D.stage1_dataset(items, classes, eval_transform(32), cache_size=37)
    x, y = plain[0]
    assert x.shape == (3, 32, 32) and y == classes.index(items[0].label)
    # the cache holds the same view (resampled once more): close to the uncached tensor,
    # farther from another image
    near = (cached[0][0] - x).abs().mean()
    far = (cached[1][0] - x).abs().mean()
    assert near < 0.5 * far, (near, far)
    xt, _ = D.stage1_dataset(items, classes, D.train_transform(32))[1]
    assert xt.shape == (3, 32, 32)
    # EXIF orientation 6 (rotate 90 cw) is applied: a 40x20 file opens as 20x40
    img = Image.new("RGB", (40, 20), (200, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(tmp_path / "rot.jpg", exif=exif)
    assert D.open_rgb(tmp_path / "rot.jpg").size == (20, 40)
    with pytest.raises(DataError, match="cannot read image"):
        (tmp_path / "bad.png").write_bytes(b"not an image")
        D.open_rgb(tmp_path / "bad.png")


def test_extra_positive_patches_are_grouped_by_source_photo(tmp_path):
    """Dais-style patch names <photo>_<n> group patches of one photo (no train/test leak)."""
    from heritage.training.data import patch_groups, scan_image_folder

    folder = tmp_path / "patches" / "crack"
    folder.mkdir(parents=True)
    for name in ("a_12_1", "a_12_7", "a_3_1", "b_0_2"):
        Image.new("RGB", (8, 8), (len(name) * 20, 0, 0)).save(folder / f"{name}.png")
    items = scan_image_folder(tmp_path / "patches", force_class="crack")
    groups = {it.path.stem: it.group for it in items}
    assert groups["a_12_1"] == groups["a_12_7"] == "photo:a_12"
    assert len(set(groups.values())) == 3
    # one file off the pattern: no grouping inferred at all
    assert patch_groups([folder / "a_12_1.png", folder / "scan.png"]) == {}


def test_cached_eval_split_gives_exactly_the_inference_pixels(two_sets):
    """Val/test caches at the input size, so training-time test metrics use the very
    tensors ``heritage evaluate``/``classify`` build from the file (no second resize)."""
    from heritage.model.predict import load_image
    from heritage.model.preprocess import eval_transform as inference_transform

    a, _ = two_sets
    items = D.scan_image_folder(a)[:3]
    classes = D.class_names(items)
    assert D.cache_size_for("train", 32) > 32
    for split in ("val", "test"):
        size = D.cache_size_for(split, 32)
        cached = D.stage1_dataset(items, classes, eval_transform(32), cache_size=size)
        for i, it in enumerate(items):
            want = inference_transform(32)(load_image(it.path))
            assert torch.equal(cached[i][0], want), (split, it.path)
