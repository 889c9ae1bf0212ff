"""The backend installer and the options page: a wheel of this project built in the test,
installed offline from that local folder into a private environment, found by the
Test button with the shipped model that travelled in the wheel."""

from __future__ import annotations

import site as site_module
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from conftest import ROOT
from helpers import Recorder

pytestmark = [pytest.mark.qgis, pytest.mark.slow]


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This project's wheel, built offline (what `make dist` does)."""
    out = tmp_path_factory.mktemp("wheelhouse")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--no-index", "--disable-pip-version-check", "-w", str(out), str(ROOT)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert [p.name for p in out.glob("*.whl")] == ["heritage_defects-0.1.0-py3-none-any.whl"]
    return out


def _share_dependencies(target: Path) -> None:
    """Make this test environment's packages (torch, geopandas ...) visible to the new
    environment, so pip finds the backend's pinned dependencies satisfied and installs
    only the wheel from the folder; any heritage distribution is left out, so the
    backend can only come from the wheel."""
    # the venv's bundled setuptools is older than the pinned set asks for: use ours
    subprocess.run(
        [str(target / "bin" / "python"), "-m", "pip", "uninstall", "-y", "-q", "setuptools"],
        capture_output=True, check=False,
    )  # fmt: skip
    site = Path(sysconfig.get_paths()["purelib"])
    shared = target / "shared-deps"
    shared.mkdir()
    for entry in site.iterdir():
        if entry.name.lower().startswith(("heritage", "__editable__")):
            continue
        (shared / entry.name).symlink_to(entry)
    # and Debian's packages the test environment sees through --system-site-packages
    system = [p for p in site_module.getsitepackages() if Path(p) != site and Path(p).is_dir()]
    paths = [str(shared), *system]
    (target_site(target) / "test-shared-deps.pth").write_text("\n".join(paths) + "\n")


def target_site(target: Path) -> Path:
    return next((target / "lib").glob("python3*/site-packages"))


def test_installer_installs_the_wheel_offline_and_finds_its_model(
    wheelhouse: Path, tmp_path: Path
) -> None:
    from heritage_qgis import installer

    target = tmp_path / "profile" / "heritage" / "backend"
    plan = installer.InstallPlan(target=target, python=sys.executable, wheelhouse=wheelhouse)
    assert "--no-index" in installer.pip_command(plan)  # offline: never the network
    rec = Recorder()
    exe = installer.install(plan, rec, before_pip=_share_dependencies)
    assert exe == installer.backend_exe(target) and exe.is_file()
    assert rec.stages[0].startswith("Creating the Python environment in ")
    assert any(s.startswith("Installing heritage-defects and its dependencies from ")
               for s in rec.stages)  # fmt: skip
    assert rec.percents == sorted(rec.percents) and rec.percents[-1] == 100.0
    info = installer.check_backend(exe)
    assert info["model_ok"] and info["model_id"] == "heritage-default"
    # the model is the wheel's copy, inside the private environment
    model_dir = Path(info["model_dir"])
    assert model_dir.is_relative_to(target_site(target) / "heritage_models")
    assert (model_dir / "stage1.safetensors").is_file()
    assert Path(info["executable"]).parent == exe.parent
    assert installer.describe(info).startswith("heritage 0.1.0 (Python 3.11")


def test_installer_refuses_a_missing_folder_and_a_wrong_python(tmp_path: Path) -> None:
    from heritage_qgis import installer

    with pytest.raises(installer.InstallError, match="does not exist"):
        installer.install(
            installer.InstallPlan(tmp_path / "b", sys.executable, tmp_path / "no-wheels")
        )
    with pytest.raises(installer.InstallError, match=r"needs Python 3\.11"):
        installer.install(installer.InstallPlan(tmp_path / "b", str(tmp_path / "no-python")))


def test_options_page_tests_saves_and_installs(qgis_app, backend_exe: Path, tmp_path: Path) -> None:
    from qgis.PyQt.QtCore import QEventLoop, QTimer

    from heritage_qgis import installer, settings
    from heritage_qgis.options import HeritageOptionsFactory, HeritageOptionsPage

    old = settings.backend_path()
    try:
        page = HeritageOptionsFactory().createWidget(None)
        assert isinstance(page, HeritageOptionsPage)
        page.path.setFilePath(str(tmp_path / "nothing" / "heritage"))
        assert not page.run_test() and "does not exist" in page.result.text()
        page.path.setFilePath(str(backend_exe))
        assert page.run_test()
        assert "model heritage-default 0.7.0" in page.result.text()
        page.apply()
        assert settings.backend_path() == str(backend_exe)
        # an installation that cannot work says why on the page, nothing is changed
        task = page.start_install(
            installer.InstallPlan(tmp_path / "b", str(tmp_path / "no-python"))
        )
        loop = QEventLoop()
        task.taskTerminated.connect(loop.quit)
        QTimer.singleShot(30000, loop.quit)
        if page.task is not None:
            loop.exec()
        assert page.install_status.text().startswith("Not installed: ")
        assert "needs Python 3.11" in page.install_status.text()
        assert page.install_button.isEnabled()
        assert settings.backend_path() == str(backend_exe)
    finally:
        settings.set_backend_path(old)
