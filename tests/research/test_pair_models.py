"""research/compare/pair_models.py: the paired comparison made before replacing the model."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from conftest import load_script


def _load():
    return load_script("research/compare/pair_models")


def _write(path: Path, rows: list[dict]) -> None:
    fields = ["path", "dataset", "class", "correct", "pointing_hit"]
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def test_pairs_images_by_name_across_work_folders_and_counts_discordant_pairs(tmp_path):
    pm = _load()
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    a_dir.mkdir(), b_dir.mkdir()
    # same images under different temporary folders; A right on 0-7, B right on 2-9
    a_rows = [{"path": f"/tmp/x1/ds/crack/{i}.jpg", "dataset": "ds", "class": "crack",
               "correct": int(i < 8), "pointing_hit": int(i % 2)} for i in range(10)]  # fmt: skip
    b_rows = [{"path": f"/tmp/x2/ds/crack/{i}.jpg", "dataset": "ds", "class": "crack",
               "correct": int(i >= 2), "pointing_hit": 1} for i in range(10)]  # fmt: skip
    b_rows.append({"path": "/tmp/x2/other/crack/z.jpg", "dataset": "other", "class": "crack",
                   "correct": 1, "pointing_hit": ""})  # fmt: skip
    a_rows.append({"path": "/tmp/x1/ds/crack/bad.jpg", "dataset": "ds", "class": "crack",
                   "correct": "", "pointing_hit": ""})  # unreadable: no decision  # fmt: skip
    _write(a_dir / "ds.per_image.csv", a_rows)
    _write(b_dir / "ds.per_image.csv", b_rows)
    result = pm.pair(pm.read_outcomes(a_dir), pm.read_outcomes(b_dir))
    ds = result["ds"]
    assert (ds["b"], ds["c"], ds["n"]) == (2, 2, 10)
    assert ds["p_value"] == pytest.approx(1.0)
    assert (ds["accuracy_a"], ds["accuracy_b"]) == (0.8, 0.8)
    assert (ds["pointing_a"], ds["pointing_b"], ds["n_masks"]) == (5, 10, 10)
    assert ds["pointing_p"] == pytest.approx(2 * 0.5**5)  # 0 vs 5 discordant hits
    assert result["_unmatched"] == {"only_a": 0, "only_b": 1}
    table = pm.render(result, ("0.3.0", "0.4.0"))
    assert "| ds | 10 | 0.800 | 0.800 | 2 | 2 | 1 | 5 / 10 of 10 (p 0.0625) |" in table
    assert "only in 0.3.0" in table and "1 in 0.4.0" in table


def test_refuses_evaluations_without_common_images(tmp_path):
    pm = _load()
    _write(tmp_path / "a.csv", [{"path": "p/1.jpg", "dataset": "d", "class": "c", "correct": 1}])
    _write(tmp_path / "b.csv", [{"path": "p/2.jpg", "dataset": "d", "class": "c", "correct": 1}])
    with pytest.raises(SystemExit, match="share no image"):
        pm.pair(pm.read_outcomes(tmp_path / "a.csv"), pm.read_outcomes(tmp_path / "b.csv"))
    with pytest.raises(SystemExit, match=r"per_image\.csv"):
        pm.read_outcomes(tmp_path)  # a folder holding no *.per_image.csv
