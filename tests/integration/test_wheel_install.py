"""The backend installed from its wheel into a fresh venv classifies the demo photos with
the shipped model, which travelled in the wheel as package data (``heritage_models``).

The wheel is built offline from a copy of this checkout; the new venv sees this environment's
third-party packages (torch, geopandas ...) through a ``.pth`` file but no heritage
distribution, and the commands run outside the checkout with neither ``PYTHONPATH`` nor
``HERITAGE_MODEL_DIR``: the code and the model can only come from the wheel. The survey
must give the recorded demo decisions (``demo_survey_expected.json``, beside this file).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import site
import sqlite3
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEMO_PHOTOS = ROOT / "resources" / "demo" / "photos"
EXPECTED = ROOT / "tests" / "integration" / "demo_survey_expected.json"

pytestmark = pytest.mark.slow


def _run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, **kw)  # type: ignore[call-overload]
    assert done.returncode == 0, f"{cmd[:3]} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


def _share_dependencies(venv: Path) -> None:
    """Let the new venv import this environment's third-party packages, not heritage."""
    purelib = Path(sysconfig.get_paths()["purelib"])
    shared = venv / "shared-deps"
    shared.mkdir()
    for entry in purelib.iterdir():
        if not entry.name.lower().startswith(("heritage", "__editable__")):
            (shared / entry.name).symlink_to(entry)
    others = [p for p in site.getsitepackages() if Path(p) != purelib and Path(p).is_dir()]
    target_site = next((venv / "lib").glob("python3*/site-packages"))
    (target_site / "shared-deps.pth").write_text("\n".join([str(shared), *others]) + "\n")


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with this checkout's wheel installed (offline, without dependencies)."""
    base = tmp_path_factory.mktemp("wheel")
    # built from a copy: build/ and *.egg-info/ of the checkout may hold stale files
    source = base / "source"
    skip = (
        ".*",
        "build",
        "dist",
        "site",
        "*.egg-info",
        "tests",
        "research",
        "resources",
        "__pycache__",
    )
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*skip))
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
          "--no-index", "--disable-pip-version-check", "-q", "-w", str(base / "dist"),
          str(source)])  # fmt: skip
    wheel = next((base / "dist").glob("heritage_defects-*.whl"))
    target = base / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(target)])
    _share_dependencies(target)
    _run([sys.executable, "-m", "pip", "--python", str(target / "bin" / "python"), "install",
          "--no-deps", "--no-index", "--disable-pip-version-check", "-q", str(wheel)])  # fmt: skip
    return target


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HERITAGE_MODEL_DIR")}
    return {**env, "OMP_NUM_THREADS": "1"}


def test_the_wheel_holds_the_shipped_model_and_finds_it(venv: Path, tmp_path: Path) -> None:
    done = _run([str(venv / "bin" / "heritage"), "info", "--json"], cwd=tmp_path, env=_env())
    info = json.loads(done.stdout)
    site_packages = next((venv / "lib").glob("python3*/site-packages"))
    assert Path(info["model_dir"]) == site_packages / "heritage_models" / "heritage-default"
    assert info["model_ok"] and (info["model_id"], info["model_version"]) == (
        "heritage-default",
        "0.7.0",
    )
    code = "import heritage, sys; print(heritage.__file__)"
    where = _run([str(venv / "bin" / "python"), "-c", code], cwd=tmp_path, env=_env()).stdout
    assert Path(where.strip()).is_relative_to(site_packages)  # not the checkout's core/


def test_the_wheel_classifies_the_demo_photos_as_recorded(venv: Path, tmp_path: Path) -> None:
    out = tmp_path / "survey.gpkg"
    _run(
        [str(venv / "bin" / "heritage"), "classify", str(DEMO_PHOTOS), "-o", str(out),
         "--device", "cpu"],
        cwd=tmp_path, env=_env(),
    )  # fmt: skip
    con = sqlite3.connect(out)
    try:
        rows = con.execute(
            "SELECT file_name, decision, p_final, model_id, model_version FROM observations "
            "ORDER BY fid"
        ).fetchall()
        tables = {r[0] for r in con.execute("SELECT table_name FROM gpkg_contents")}
    finally:
        con.close()
    assert {"observations", "flagged_buildings", "inspection_route"} <= tables
    expected = json.loads(EXPECTED.read_text(encoding="utf-8"))["observations"]
    assert [r[0] for r in rows] == [e["file_name"] for e in expected]
    for (name, decision, p_final, model_id, version), want in zip(rows, expected, strict=True):
        assert (decision, model_id, version) == (
            want["decision"],
            want["model_id"],
            want["model_version"],
        ), name
        if want["p_final"] is not None:
            assert math.isclose(p_final, want["p_final"], rel_tol=2e-3, abs_tol=1e-5), name
