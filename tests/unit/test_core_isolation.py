"""The core library must never import QGIS or Qt, and light commands stay light."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import heritage

CORE_MODULES = sorted(
    f"heritage.{m.name}" for m in pkgutil.iter_modules([str(Path(heritage.__file__).parent)])
)


def _loaded_after_import(module: str) -> set[str]:
    code = (
        f"import sys, importlib; importlib.import_module({module!r}); "
        "print('\\n'.join(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_every_core_module_imports_without_qgis_or_qt():
    assert "heritage.cli" in CORE_MODULES
    for module in CORE_MODULES:
        loaded = _loaded_after_import(module)
        bad = sorted(m for m in loaded if m.split(".")[0] in {"qgis", "PyQt5", "PyQt6", "sip"})
        assert not bad, f"{module} pulled in {bad[:5]}"


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
