"""The zip built by `make plugin` (scripts/build_plugin.py) installs into a clean QGIS
profile folder and loads, starts and unloads from there."""

from __future__ import annotations

import configparser
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from helpers import plugin_profile

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = "heritage_qgis"

pytestmark = pytest.mark.qgis


@pytest.fixture(scope="module")
def plugin_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build_plugin.py"), "--out-dir", str(out),
         "--date", "2026-01-02"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    zips = list(out.glob(f"{PLUGIN}-*.zip"))
    assert len(zips) == 1
    return zips[0]


def _pyproject_version() -> str:
    import tomllib

    with (ROOT / "pyproject.toml").open("rb") as fh:
        return tomllib.load(fh)["project"]["version"]


def test_zip_layout_and_stamped_metadata(plugin_zip: Path) -> None:
    version = _pyproject_version()
    assert plugin_zip.name == f"{PLUGIN}-{version}.zip"
    with zipfile.ZipFile(plugin_zip) as zf:
        names = zf.namelist()
        metadata = zf.read(f"{PLUGIN}/metadata.txt").decode()
    assert all(n.split("/")[0] == PLUGIN for n in names)
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    for need in ("__init__.py", "plugin.py", "provider.py", "backend.py", "icon.svg", "LICENSE",
                 "resources/styles/observations.qml", "resources/maptip.html"):  # fmt: skip
        assert f"{PLUGIN}/{need}" in names, need
    parser = configparser.ConfigParser()
    parser.read_string(metadata)
    assert parser["general"]["version"] == version
    assert parser["general"]["icon"] == "icon.svg"
    assert "(2026-01-02)" in parser["general"]["changelog"]
    assert parser["general"]["qgisMinimumVersion"] == "3.22"


def test_zip_installs_into_a_clean_profile_and_loads(
    qgis_app, qgis_iface, plugin_zip: Path, tmp_path: Path
) -> None:
    import qgis.utils
    from qgis.core import QgsApplication

    plugins_dir = tmp_path / "profiles" / "default" / "python" / "plugins"
    # this process may already hold the source tree's package: load the installed one
    with plugin_profile(plugin_zip, plugins_dir, qgis_iface):
        assert qgis.utils.available_plugins == [PLUGIN]
        assert qgis.utils.pluginMetadata(PLUGIN, "version") == _pyproject_version()
        assert qgis.utils.loadPlugin(PLUGIN)
        assert Path(sys.modules[PLUGIN].__file__).resolve().is_relative_to(plugins_dir.resolve())
        assert qgis.utils.startPlugin(PLUGIN)
        try:
            plugin = qgis.utils.plugins[PLUGIN]
            assert plugin.action is not None and not plugin.action.icon().isNull()
            provider = QgsApplication.processingRegistry().providerById("heritage")
            assert provider is not None and len(provider.algorithms()) == 9
        finally:
            assert qgis.utils.unloadPlugin(PLUGIN)
        assert QgsApplication.processingRegistry().providerById("heritage") is None
