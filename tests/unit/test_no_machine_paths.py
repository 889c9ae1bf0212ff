"""No tracked text file holds an absolute path of the machine it was made on.

The folder above the checkout (where ``../shared`` and ``../runs`` lie) is this machine's;
committed results and cards name data sets by relative paths or fingerprints instead.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_tracked_files_hold_no_path_of_this_machine() -> None:
    try:
        names = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
        ).stdout.split(b"\0")
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    needle = (str(ROOT.parent) + "/").encode()
    found = []
    for name in filter(None, names):
        path = ROOT / name.decode()
        if path.suffix in {".safetensors", ".png", ".jpg", ".pdf", ".gpkg"} or not path.is_file():
            continue
        if needle in path.read_bytes():
            found.append(name.decode())
    assert not found, f"absolute paths of this machine in {found}"
