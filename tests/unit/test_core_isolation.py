"""The core library must never import QGIS or Qt, and light commands stay light."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import heritage

CORE_MODULES = sorted(
    m.name for m in pkgutil.walk_packages([str(Path(heritage.__file__).parent)], "heritage.")
)


def test_every_core_module_imports_without_qgis_or_qt():
    """Import every core module in one fresh interpreter: none may pull in QGIS or Qt.

    One interpreter for all modules (their union of imports) keeps this fast; a
    module importing qgis anywhere in its import chain still shows up here.
    """
    assert "heritage.cli" in CORE_MODULES and "heritage.survey.pipeline" in CORE_MODULES
    code = (
        "import sys, importlib\n"
        f"for m in {CORE_MODULES!r}:\n"
        "    importlib.import_module(m)\n"
        "print('\\n'.join(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(out.stdout.split())
    assert set(CORE_MODULES) <= loaded
    bad = sorted(m for m in loaded if m.split(".")[0] in {"qgis", "PyQt5", "PyQt6", "sip"})
    assert not bad, f"core modules pulled in {bad[:5]}"


def test_cli_help_does_not_load_torch_or_geopandas():
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from heritage.cli import cli\n"
        "r = CliRunner().invoke(cli, ['--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        "print('photos' in r.output, 'torch' in sys.modules, 'geopandas' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "False", "False"]
