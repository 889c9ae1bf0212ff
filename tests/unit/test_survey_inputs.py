"""heritage classify on hostile inputs (issue 25): nothing wrong, doubled or silently skipped.

A tiny random model over a few generated photos; each test reproduces one defect that
a hostile test found on the survey path.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pyogrio
import pytest
import torch
from test_photos_import import geotagged
from test_survey import make_tiny_model

from heritage.survey.pipeline import ClassifyConfig, run_survey

BAD_NAME = os.fsdecode(b"x\xff.jpg")


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("model") / "tiny", threshold=0.0)


def _photos(folder: Path, n: int = 3, names: tuple[str, ...] = ()) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    names = names or tuple(f"p{i}.jpg" for i in range(n))
    for i, name in enumerate(names):
        geotagged(folder / name, 43.4630 + i * 1e-4, 11.8800 + i * 1e-4)
    return folder


def _survey(photo_dir: Path, out: Path, model_dir: Path, **kw) -> object:
    cfg = ClassifyConfig((photo_dir,), out, model_dir=model_dir, device="cpu", **kw)
    return run_survey(cfg)


def test_non_utf8_file_name_is_classified_with_the_batch(tmp_path: Path, model_dir: Path):
    """Item 1: it crashed the whole batch (0 of 14 stored) and every re-run."""
    d = _photos(tmp_path / "n", names=("a.jpg", BAD_NAME, "z.jpg"))
    out = tmp_path / "n.gpkg"
    summary = _survey(d, out, model_dir)
    assert summary.classified == 3
    obs = pyogrio.read_dataframe(out, layer="observations").set_index("file_name")
    assert sorted(obs.index) == ["a.jpg", "x\\xff.jpg", "z.jpg"]
    assert "not valid UTF-8" in obs.loc["x\\xff.jpg", "message"]
    again = _survey(d, out, model_dir)
    assert (again.classified, again.already_classified) == (0, 3)


def test_output_inside_the_photo_folder_is_never_read_back(tmp_path: Path, model_dir: Path):
    """Item 3: overlays, heat maps and thumbnails were classified on the next run
    (observations 3 -> 12 -> 39 over three runs)."""
    d = _photos(tmp_path / "inself")
    out = d / "survey.gpkg"
    for _ in range(3):
        summary = _survey(d, out, model_dir)
    obs = pyogrio.read_dataframe(out, layer="observations")
    assert sorted(obs["file_name"]) == ["p0.jpg", "p1.jpg", "p2.jpg"]
    assert summary.found == 3 and summary.already_classified == 3
    bad = pyogrio.read_dataframe(out, layer="invalid_photos")
    assert list(bad["file_name"]) == ["survey_overlays"]  # listed once, with its reason
    assert bad["reason"].iloc[0] == "skipped_folder"


def test_symlinked_and_hidden_subfolders_are_listed(tmp_path: Path, model_dir: Path):
    """Item 6: skipped folders had no row in invalid_photos."""
    d = _photos(tmp_path / "s", n=1)
    _photos(tmp_path / "elsewhere", n=1)
    os.symlink(tmp_path / "elsewhere", d / "linked")
    _photos(d / ".cache", n=1)
    out = tmp_path / "s.gpkg"
    summary = _survey(d, out, model_dir)
    bad = pyogrio.read_dataframe(out, layer="invalid_photos").set_index("file_name")
    assert dict(bad["reason"]) == {".cache": "skipped_folder", "linked": "skipped_folder"}
    assert "symbolic link" in bad.loc["linked", "message"]
    assert summary.skipped == {"skipped_folder": 2} and summary.classified == 1


def cli_line(capsys, *args: str) -> tuple[int, str]:
    """Run the console entry point in-process: (exit code, what it printed on stderr)."""
    import sys

    from heritage.cli import main

    argv = sys.argv
    sys.argv = ["heritage", *args]
    code = 0
    try:
        main()
    except SystemExit as exited:
        code = int(exited.code or 0)
    finally:
        sys.argv = argv
    return code, capsys.readouterr().err


def one_error(err: str) -> str:
    """The one ``Error:`` line of a failed command's stderr (progress bars and click's
    usage lines may come before it); fails on a traceback or several errors."""
    assert "Traceback" not in err, err
    errors = [line for line in re.split(r"[\r\n]", err) if "Error: " in line]
    assert len(errors) == 1 and errors[0].startswith("Error: "), err
    assert err.rstrip("\n").endswith(errors[0]), err
    return errors[0]


def test_unknown_cam_method_is_refused_before_the_model_loads(tmp_path: Path, capsys) -> None:
    """Item 5: --cam-method bogus failed after 10 s of loading, with a traceback."""
    code, err = cli_line(
        capsys, "classify", str(tmp_path), "-o", str(tmp_path / "x.gpkg"), "--cam-method", "bogus"
    )
    assert code == 1 and "'bogus' is not one of" in err and "hirescam" in err  # README: 1
    assert "Traceback" not in err and not (tmp_path / "x.gpkg").exists()
