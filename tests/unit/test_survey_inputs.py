"""heritage classify on hostile inputs (issue 25): nothing wrong, doubled or silently skipped.

A tiny random model over a few generated photos; each test reproduces one defect that
a hostile test found on the survey path.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyogrio
import pytest
from factories import geotagged_folder
from helpers import classify_folder, cli_line

BAD_NAME = os.fsdecode(b"x\xff.jpg")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_non_utf8_file_name_is_classified_with_the_batch(tmp_path: Path, flag_model: Path):
    """Item 1: it crashed the whole batch (0 of 14 stored) and every re-run."""
    d = geotagged_folder(tmp_path / "n", names=("a.jpg", BAD_NAME, "z.jpg"))
    out = tmp_path / "n.gpkg"
    summary = classify_folder(d, out, flag_model)
    assert summary.classified == 3
    obs = pyogrio.read_dataframe(out, layer="observations").set_index("file_name")
    assert sorted(obs.index) == ["a.jpg", "x\\xff.jpg", "z.jpg"]
    assert "not valid UTF-8" in obs.loc["x\\xff.jpg", "message"]
    again = classify_folder(d, out, flag_model)
    assert (again.classified, again.already_classified) == (0, 3)


def test_output_inside_the_photo_folder_is_never_read_back(tmp_path: Path, flag_model: Path):
    """Item 3: overlays, heat maps and thumbnails were classified on the next run
    (observations 3 -> 12 -> 39 over three runs)."""
    d = geotagged_folder(tmp_path / "inself")
    out = d / "survey.gpkg"
    for _ in range(3):
        summary = classify_folder(d, out, flag_model)
    obs = pyogrio.read_dataframe(out, layer="observations")
    assert sorted(obs["file_name"]) == ["p0.jpg", "p1.jpg", "p2.jpg"]
    assert summary.found == 3 and summary.already_classified == 3
    bad = pyogrio.read_dataframe(out, layer="invalid_photos")
    assert list(bad["file_name"]) == ["survey_overlays"]  # listed once, with its reason
    assert bad["reason"].iloc[0] == "skipped_folder"


def test_symlinked_and_hidden_subfolders_are_listed(tmp_path: Path, flag_model: Path):
    """Item 6: skipped folders had no row in invalid_photos."""
    d = geotagged_folder(tmp_path / "s", n=1)
    geotagged_folder(tmp_path / "elsewhere", n=1)
    os.symlink(tmp_path / "elsewhere", d / "linked")
    geotagged_folder(d / ".cache", n=1)
    out = tmp_path / "s.gpkg"
    summary = classify_folder(d, out, flag_model)
    bad = pyogrio.read_dataframe(out, layer="invalid_photos").set_index("file_name")
    assert dict(bad["reason"]) == {".cache": "skipped_folder", "linked": "skipped_folder"}
    assert "symbolic link" in bad.loc["linked", "message"]
    assert summary.skipped == {"skipped_folder": 2} and summary.classified == 1


def test_a_folder_of_only_unreadable_files_gives_an_empty_survey(tmp_path: Path, flag_model: Path):
    """A first run that stores no observation (every file unreadable, or a cancel before
    the first photo) crashed in the priority step with KeyError: 'priority_category'."""
    d = tmp_path / "broken"
    d.mkdir()
    (d / "a.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "b.gpkg"
    summary = classify_folder(d, out, flag_model)
    assert (summary.classified, summary.observations_total, summary.buildings) == (0, 0, 0)
    assert summary.skipped == {"unreadable_image": 1} and summary.categories == {}
    assert len(pyogrio.read_dataframe(out, layer="observations")) == 0
    assert list(pyogrio.read_dataframe(out, layer="invalid_photos")["file_name"]) == ["a.jpg"]


def test_unknown_cam_method_is_refused_before_the_model_loads(tmp_path: Path, capsys) -> None:
    """Item 5: --cam-method bogus failed after 10 s of loading, with a traceback."""
    code, err = cli_line(
        capsys, "classify", str(tmp_path), "-o", str(tmp_path / "x.gpkg"), "--cam-method", "bogus"
    )
    assert code == 1 and "'bogus' is not one of" in err and "hirescam" in err  # README: 1
    assert "Traceback" not in err and not (tmp_path / "x.gpkg").exists()
