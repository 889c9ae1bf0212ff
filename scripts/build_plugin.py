"""Build the installable QGIS plugin zip: ``dist/heritage_qgis-<version>.zip``.

Run by ``make plugin`` (with the project's venv python; QGIS is not needed):

    .venv/bin/python scripts/build_plugin.py [--out-dir DIR] [--date YYYY-MM-DD]

The zip's top folder is the plugin folder ``heritage_qgis/`` holding the plugin's Python
modules (no ``__pycache__``), ``metadata.txt`` stamped with the version of
``pyproject.toml`` and the build date in the changelog, ``icon.svg``, ``LICENSE`` and the
default styles and map tip (``resources/``) the plugin falls back on. The backend
(``heritage``) is not in the zip: the plugin installs it (Settings > Options >
Heritage > Install the backend, the distribution ``heritage-defects`` from PyPI or
from a folder of wheels that ``make wheelhouse`` builds), or ``make setup`` here.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = "heritage_qgis"
#: (source relative to ROOT, path inside the plugin folder)
EXTRA_FILES = (
    ("resources/icons/heritage.svg", "icon.svg"),
    ("LICENSE", "LICENSE"),
    ("resources/maptip.html", "resources/maptip.html"),
)
EXTRA_GLOBS = (("core/io/qml", "*.qml", "resources/styles"),)
SKIP_DIRS = {"__pycache__", ".pytest_cache", ".ruff_cache"}
SKIP_SUFFIXES = {".pyc", ".pyo", ".orig", ".rej"}


def project_version(pyproject: Path = ROOT / "pyproject.toml") -> str:
    """``[project] version`` of pyproject.toml."""
    with pyproject.open("rb") as fh:
        return str(tomllib.load(fh)["project"]["version"])


def stamped_metadata(text: str, version: str, date: str) -> str:
    """metadata.txt with ``version=`` set and a changelog line for this build."""
    if re.search(r"^version=.*$", text, flags=re.M) is None:
        raise ValueError("metadata.txt has no version= line")
    text = re.sub(r"^version=.*$", f"version={version}", text, flags=re.M)
    entry = f"{version} ({date}) built from the heritage project"
    if re.search(r"^changelog=", text, flags=re.M):
        text = re.sub(r"^changelog=(.*)$", f"changelog={entry}\n    \\1", text, flags=re.M)
    else:
        text = text.rstrip("\n") + f"\nchangelog={entry}\n"
    return text if text.endswith("\n") else text + "\n"


def plugin_files(root: Path = ROOT) -> list[tuple[Path, str]]:
    """``(source file, name inside the zip)`` for every file of the package."""
    out: list[tuple[Path, str]] = []
    src = root / PLUGIN
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.suffix in SKIP_SUFFIXES:
                continue
            out.append((path, f"{PLUGIN}/{path.relative_to(src).as_posix()}"))
    for rel, target in EXTRA_FILES:
        out.append((root / rel, f"{PLUGIN}/{target}"))
    for folder, pattern, target in EXTRA_GLOBS:
        for path in sorted((root / folder).glob(pattern)):
            out.append((path, f"{PLUGIN}/{target}/{path.name}"))
    return out


def build(out_dir: Path, date: str | None = None, root: Path = ROOT) -> Path:
    """Write the plugin zip into ``out_dir`` and return its path."""
    version = project_version(root / "pyproject.toml")
    date = date or dt.date.today().isoformat()
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{PLUGIN}-{version}.zip"
    tmp = target.with_suffix(".zip.part")
    metadata = stamped_metadata((root / "metadata.txt").read_text(encoding="utf-8"), version, date)
    missing = [str(p) for p, _ in plugin_files(root) if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"files the plugin needs are missing: {', '.join(missing)}")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(zipfile.ZipInfo(f"{PLUGIN}/"), "")
        zf.writestr(f"{PLUGIN}/metadata.txt", metadata)
        for path, name in plugin_files(root):
            zf.write(path, name)
    tmp.replace(target)
    return target


def main(argv: list[str] | None = None) -> int:
    """Command line: build the zip and print its path."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=ROOT / "dist")
    parser.add_argument("--date", default=None, help="build date for the changelog")
    args = parser.parse_args(argv)
    try:
        path = build(args.out_dir, args.date)
    except (OSError, ValueError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    with zipfile.ZipFile(path) as zf:
        n = len(zf.namelist())
    print(f"{path} ({n} entries, {path.stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
