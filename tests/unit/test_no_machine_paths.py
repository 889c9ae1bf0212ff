"""No tracked text file holds an absolute path of the machine it was made on.

The folder above the checkout (where ``../shared`` and ``../runs`` lie) is this machine's;
committed results and cards name data sets by relative paths or fingerprints instead.
When the checkout lies in a folder every machine has (a clone in ``/tmp``, the home
folder), where ``/tmp/`` in a documented example is no trace of this machine, the
checkout itself and its ``../shared`` and ``../runs`` are looked for instead.
"""

from __future__ import annotations

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


def test_tracked_files_hold_no_path_of_this_machine() -> None:
    try:
        names = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
        ).stdout.split(b"\0")
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
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
