"""Shared fixtures: where ../shared/data is, tiny models (from ``factories``), the backend.

The tests are in four folders, each also a marker (``pytest -m unit``...), and plain
``pytest`` runs them all:

- ``tests/unit``: fast and self-contained: generated data only (``factories``), no
  ``../shared``; a unit test that asks for the shared data fails and says so.
- ``tests/integration``: what needs ``../shared/data``, the shipped model on real
  photos, a real backend process, or minutes of CPU (training end to end, kill tests,
  the Dask cluster).
- ``tests/qgis``: what needs a headless QGIS (pytest-qgis).
- ``tests/research``: the research code (``research/``).
"""

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
from factories import tiny_model_dir
from helpers import one_torch_thread as _one_torch_thread

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("HERITAGE_SHARED_DATA", ROOT.parent / "shared" / "data"))


#: the test folders, each a marker given to the tests it holds
FOLDERS = ("unit", "integration", "qgis", "research")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test with its folder (``unit``, ``integration``, ``qgis``, ``research``)."""
    tests_dir = Path(__file__).parent
    for item in items:
        folder = (
            item.path.relative_to(tests_dir).parts[0] if item.path.is_relative_to(tests_dir) else ""
        )
        if folder in FOLDERS:
            item.add_marker(folder)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A unit test that asks for the shared data fails (before its fixtures are made)."""
    if item.get_closest_marker("unit") and "shared_data" in item.fixturenames:
        pytest.fail(
            "tests/unit runs on generated data only, without ../shared: build the input "
            "with tests/factories.py or move the test to tests/integration",
            pytrace=False,
        )


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
    """Import ``scripts/<name>.py``, or ``<name>.py`` when ``name`` has a folder (e.g.
    ``research/probes/check_tta``), for its tests (the scripts are not a package)."""
    path = ROOT / f"{name}.py" if "/" in name else ROOT / "scripts" / f"{name}.py"
    name = Path(name).name
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def one_torch_thread():
    """Torch on one thread for a module's tests, its module fixtures included (use it as
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``)."""
    with _one_torch_thread():
        yield


@pytest.fixture(scope="session")
def flag_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default tiny model (``factories.tiny_card``: resnet18 stage 2) with threshold 0:
    every photo is flagged."""
    return tiny_model_dir(tmp_path_factory.mktemp("model") / "tiny", threshold=0.0)


# ------------------------------------------------------------------ plugin tests


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random two-stage model at input size 64 that flags every photo (threshold 0)."""
    return tiny_model_dir(
        tmp_path_factory.mktemp("plugin_model") / "tiny",
        model_id="tiny-plugin",
        labels=("crack", "no_crack", "salt"),
        positives=("crack",),
        stage2="mobilenet_v3_small",
        threshold=0.0,
    )


@pytest.fixture(scope="session")
def backend_exe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A `heritage` executable running the core this test session imports (the
    plugin strips PYTHONPATH from the backend's environment, so the wrapper sets it)."""
    import os
    import sys

    exe = tmp_path_factory.mktemp("backend") / "heritage"
    pythonpath = os.environ.get("PYTHONPATH", "")
    exe.write_text(
        "#!/bin/sh\n"
        + (f"PYTHONPATH='{pythonpath}' export PYTHONPATH\n" if pythonpath else "")
        + f"exec '{sys.executable}' -c 'from heritage.cli import main; main()' \"$@\"\n"
    )
    exe.chmod(0o755)
    return exe


def wait_until(predicate, timeout_s: float) -> bool:
    """Run the Qt event loop until ``predicate()`` or the timeout; returns predicate()
    (QGIS tests that wait for a task or a backend process)."""
    from qgis.PyQt.QtCore import QEventLoop, QTimer

    if predicate():
        return True
    loop = QEventLoop()
    poll = QTimer()
    poll.timeout.connect(lambda: loop.quit() if predicate() else None)
    poll.start(20)
    QTimer.singleShot(int(timeout_s * 1000), loop.quit)
    loop.exec()
    poll.stop()
    return predicate()
