"""Which files are input (heritage.survey.scan) and how their names become text
(heritage.io.filenames).

Issue 25 items 1, 3 and 6: a non-UTF-8 file name, an output folder inside the photo
folder, and folders that cannot or must not be read (unreadable, symlinked, hidden).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from factories import geotagged
from helpers import read_layer

from heritage.io.filenames import name_problem, path_text
from heritage.survey.photos import ImportConfig, import_photos
from heritage.survey.scan import OUTPUT_MARKER, mark_output_folder, scan_photo_files

#: a file name that is not UTF-8 (byte 0xFF), as Python sees it on POSIX
BAD_NAME = os.fsdecode(b"x\xff.jpg")


def test_path_text_escapes_bytes_that_are_not_utf8() -> None:
    assert path_text(BAD_NAME) == "x\\xff.jpg"
    assert path_text("città/perché.jpg") == "città/perché.jpg"  # valid names unchanged
    assert "not valid UTF-8" in name_problem(BAD_NAME) and name_problem("ok.jpg") == ""


@pytest.mark.skipif(os.name == "nt", reason="Windows file names are always Unicode")
def test_photos_with_a_non_utf8_name_imports_the_whole_batch(tmp_path: Path) -> None:
    """It used to crash with UnicodeEncodeError and store none of the good photos."""
    d = tmp_path / "n"
    d.mkdir()
    geotagged(d / "a.jpg", 43.46, 11.88)
    geotagged(d / BAD_NAME, 43.47, 11.87)
    geotagged(d / "z.jpg", 43.48, 11.86)
    out = tmp_path / "n.gpkg"
    summary = import_photos([d], out)
    assert summary.imported == 3
    names = sorted(r["file_name"] for r in read_layer(out, "photos"))
    assert names == ["a.jpg", "x\\xff.jpg", "z.jpg"]
    again = import_photos([d], out)  # the escaped name is found again: nothing doubled
    assert (again.imported, again.already_imported) == (0, 3)


def test_unreadable_symlinked_hidden_and_output_folders_are_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = tmp_path / "survey"
    for sub in ("ok", "locked", ".hidden"):
        (d / sub).mkdir(parents=True)
    (tmp_path / "target").mkdir()
    geotagged(d / "ok" / "a.jpg", 43.46, 11.88)
    geotagged(d / "locked" / "b.jpg", 43.47, 11.88)
    geotagged(d / ".hidden" / "c.jpg", 43.48, 11.88)
    os.symlink(tmp_path / "target", d / "link")
    geotagged(tmp_path / "target" / "d.jpg", 43.49, 11.88)
    out_dir = mark_output_folder(d / "results")
    geotagged(out_dir / "overlay.jpg", 43.5, 11.88)  # would be read back as a photo
    (d / "old.gpkg").write_bytes(b"")
    (d / "old_overlays").mkdir()
    geotagged(d / "old_overlays" / "thumb.jpg", 43.51, 11.88)

    real_scandir = os.scandir

    def scandir(path=".", *args, **kwargs):  # root runs the tests: permissions do not bite
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path, *args, **kwargs)

    monkeypatch.setattr(os, "scandir", scandir)
    scan = scan_photo_files([d])
    assert [p.name for p in scan.files] == ["a.jpg"]
    why = {Path(s.path).name: s.message for s in scan.skipped}
    assert set(why) == {"locked", ".hidden", "link", "results", "old_overlays"}
    assert "Permission denied" in why["locked"]
    assert "symbolic link" in why["link"] and "hidden" in why[".hidden"]
    assert "written by heritage" in why["results"] and "old.gpkg" in why["old_overlays"]
    assert (out_dir / OUTPUT_MARKER).is_file()

    out = tmp_path / "x.gpkg"
    summary = import_photos([d], out, ImportConfig())
    rows = {r["file_name"]: r for r in read_layer(out, "invalid_photos")}
    assert {k: v["reason"] for k, v in rows.items()} == dict.fromkeys(why, "skipped_folder")
    assert summary.skipped == {"skipped_folder": 5} and summary.imported == 1
    assert import_photos([d], out).invalid_written == 0  # listed once
