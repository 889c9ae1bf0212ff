"""Atomic writes: the old file or the new one, never half of one, and no leftovers."""

from __future__ import annotations

from pathlib import Path

import pytest

from heritage.io.fileio import atomic_path, atomic_write_bytes, partial_name, write_json


def test_the_new_content_replaces_the_old_only_when_the_writer_finished(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "out.csv"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.suffix == ".csv" and not tmp.exists()
        tmp.write_text("a,b\n")
        assert not target.exists()  # nothing visible before the block ends
    assert target.read_text() == "a,b\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.csv"]


def test_a_failed_writer_leaves_the_old_file_and_no_partial_one(tmp_path: Path) -> None:
    target = tmp_path / "out.tif"
    target.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt), atomic_path(target, suffix=".tif") as tmp:
        tmp.write_bytes(b"half")
        raise KeyboardInterrupt
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.tif"]


def test_bytes_and_json_go_through_it(tmp_path: Path) -> None:
    atomic_write_bytes(tmp_path / "a.bin", b"\x00\x01")
    write_json(tmp_path / "b.json", {"p": tmp_path})
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "b.json").read_text() == f'{{\n  "p": "{tmp_path}"\n}}\n'
    name = partial_name(tmp_path / "x.gpkg").name
    assert name.startswith(".x.partial-") and name.endswith(".gpkg")
    assert partial_name(tmp_path / "x.gpkg") != partial_name(tmp_path / "x.gpkg")
