"""No tracked text file holds an absolute path of the machine it was made on.

The folder above the checkout (where ``../shared`` and ``../runs`` lie) is this machine's;
committed results and cards name data sets by name and content fingerprint instead, and
hold no absolute path of any machine (records: JSON, CSV).
When the checkout lies in a folder every machine has (a clone in ``/tmp``, the home
folder), where ``/tmp/`` in a documented example is no trace of this machine, the
checkout itself and its ``../shared`` and ``../runs`` are looked for instead.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def machine_paths(root: Path) -> list[bytes]:
    """The path prefixes that would betray the machine ``root`` was checked out on."""
    generic = {Path("/"), Path("/var/tmp"), Path(tempfile.gettempdir()).resolve(), Path.home()}
    if root.parent not in generic:
        return [(str(root.parent) + "/").encode()]
    return [(str(p) + "/").encode() for p in (root, root.parent / "shared", root.parent / "runs")]


def test_machine_paths_of_a_checkout_in_a_common_folder() -> None:
    assert machine_paths(Path("/srv/build/main")) == [b"/srv/build/"]
    tmp = Path(tempfile.gettempdir()).resolve()
    assert machine_paths(tmp / "ci") == [
        f"{tmp}/ci/".encode(),
        f"{tmp}/shared/".encode(),
        f"{tmp}/runs/".encode(),
    ]


def _tracked() -> list[str]:
    try:
        names = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
        ).stdout.split(b"\0")
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [n.decode() for n in names if n]


def test_tracked_files_hold_no_path_of_this_machine() -> None:
    names = [n.encode() for n in _tracked()]
    needles = machine_paths(ROOT)
    found = []
    for name in filter(None, names):
        path = ROOT / name.decode()
        if path.suffix in {".safetensors", ".png", ".jpg", ".pdf", ".gpkg"} or not path.is_file():
            continue
        data = path.read_bytes()
        if any(needle in data for needle in needles):
            found.append(name.decode())
    assert not found, f"absolute paths of this machine in {found}"


def test_committed_records_and_model_cards_name_no_folder_of_any_machine() -> None:
    """Results and cards (JSON, CSV) are records that travel: an absolute path in them is
    a folder of the machine that made them (a temporary evaluation folder, a data folder),
    whichever machine that was; a card's torch version carries no CUDA build tag."""
    from heritage.model.provenance import machine_paths as absolute_paths

    found = {}
    for name in _tracked():
        path = ROOT / name
        if path.suffix not in {".json", ".csv", ".geojson"} or not path.is_file():
            continue
        paths = absolute_paths(path.read_text(encoding="utf-8", errors="replace"))
        if paths:
            found[name] = paths[:3]
        if path.name == "model.json":
            torch = json.loads(path.read_text(encoding="utf-8")).get("training", {}).get("torch")
            assert torch is None or "+" not in torch, f"{name}: torch {torch}"
    assert not found, f"absolute paths in committed records: {found}"
