"""Shared fixtures: where ../shared/data is, and small generated images."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

# One compute thread per process: the suite runs several processes at once (CLI
# subprocesses, QGIS), and on a 2-core machine torch's default of one thread per core
# oversubscribes the CPU (measured 7x slower). Set before torch is first imported.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("HERITAGE_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data sets (``../shared/data``); the test fails loudly when absent."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"real test data not found at {SHARED_DATA}; set HERITAGE_SHARED_DATA")
    return SHARED_DATA


@pytest.fixture(scope="session")
def exif_gps(shared_data: Path) -> Path:
    """The geotagged photo corpus."""
    return shared_data / "exif-gps"


def load_script(name: str) -> ModuleType:
    """Import ``scripts/<name>.py`` (the scripts are not a package) for its unit tests."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
