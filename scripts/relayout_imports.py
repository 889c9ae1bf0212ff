#!/usr/bin/env python3
"""Rewrite imports and paths of the flat ``core/`` layout to the layered subpackages.

The mechanical half of the move into ``heritage.{cli,survey,training,model,io,kernel}``
(``--move`` did the ``git mv`` once). For work written against the flat layout: after
rebasing onto the new layout, run from the repository root

    .venv/bin/python scripts/relayout_imports.py FILE...   # the files your branch touched

It rewrites ``heritage.<old module>`` (imports, ``mock.patch`` strings, docs), relative
imports inside ``core/`` (to absolute ones) and ``core/<old>.py`` paths; it is idempotent.
Then ``ruff check --fix`` sorts the imports. Names that moved between modules when the
cycles were dissolved are not rewritten (see ARCHITECTURE.md).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

# old module (core/<old>.py) -> new dotted path below heritage
MOVES: dict[str, str] = {
    # kernel: standard library only
    "errors": "kernel.errors",
    "progress": "kernel.progress",
    "records": "kernel.records",
    "interrupts": "kernel.interrupts",
    # io: files, GeoPackage, CRS, EXIF, styles
    "fileio": "io.fileio",
    "filenames": "io.filenames",
    "gpkg": "io.gpkg",
    "surveyfile": "io.surveyfile",
    "geo": "io.geo",
    "exif": "io.exif",
    "styles": "io.styles",
    "reviews": "io.reviews",
    # model: networks, card, inference, explanations, metrics
    "modelzoo": "model.zoo",
    "modelcard": "model.card",
    "cardcheck": "model.cardcheck",
    "predict": "model.predict",
    "explain": "model.explain",
    "metrics": "model.metrics",
    "wallgate": "model.wallgate",
    "tiling": "model.tiling",
    "scene": "model.scene",
    "fold": "model.fold",
    # training
    "data": "training.data",
    "fit": "training.fit",
    "train": "training.train",
    "evaluate": "training.evaluate",
    "prune": "training.prune",
    "plots": "training.plots",
    "crackpaint": "training.crackpaint",
    "review_data": "training.review_data",
    "finetune": "training.finetune",
    # survey
    "photos": "survey.photos",
    "scan": "survey.scan",
    "buildings": "survey.buildings",
    "priority": "survey.priority",
    "route": "survey.route",
    "sites": "survey.sites",
    "raster": "survey.raster",
    "survey": "survey.pipeline",
    "distributed": "survey.distributed",
    "mapplot": "survey.mapplot",
    "report": "survey.report",
    "report_images": "survey.report_images",
    "report_render": "survey.report_render",
    "basemap": "survey.basemap",
    # cli
    "cli": "cli",
    "cli_options": "cli.options",
    "commands_classify": "cli.classify",
    "commands_evaluate": "cli.evaluate",
    "commands_group": "cli.group",
    "commands_info": "cli.info",
    "commands_photos": "cli.photos",
    "commands_prune": "cli.prune",
    "commands_raster": "cli.raster",
    "commands_report": "cli.report",
    "commands_route": "cli.route",
    "commands_train": "cli.train",
    "commands_review": "cli.review",
    "commands_finetune": "cli.finetune",
}
PACKAGES = {
    "kernel": "The kernel: errors, progress, records and interrupts (standard library only).",
    "io": "Files: atomic writes, file names, GeoPackage, survey files, CRS, EXIF, QGIS styles.",
    "model": "The model: networks, model card, inference, Grad-CAM, scene mode, metrics.",
    "training": "Training: data sets, the fit loop, two-stage training, evaluation, pruning.",
    "survey": "The survey: photos, classification, buildings, priority, route, reports.",
    "cli": None,  # cli.py becomes cli/__init__.py
}
#: modules that left the product for research/ (outside the package)
TO_RESEARCH = {
    "compare": ("research.compare.compare", "research/compare/compare.py"),
    "commands_compare": ("research.compare.command", "research/compare/command.py"),
}
NEW_SUBMODULES = {
    p: {v.split(".", 1)[1] for v in MOVES.values() if v.startswith(p + ".")} for p in PACKAGES
}


def new_path(old: str) -> str:
    new = MOVES[old]
    if new in PACKAGES:
        return f"core/{new}/__init__.py"
    return "core/" + new.replace(".", "/") + ".py"


_NAMES = "|".join(sorted(MOVES, key=len, reverse=True))
# heritage.<old>[.<attr>]: not when <old> is already a new package followed by its submodule
_DOTTED = re.compile(rf"\bheritage\.({_NAMES})\b(?!\.py)(\.(\w+))?")
_PATH = re.compile(rf"\bcore/({_NAMES})\.py\b")
_FROM_HERITAGE = re.compile(rf"^(\s*)from heritage import ({_NAMES})( as (\w+))?\s*$", re.M)


def _dotted(m: re.Match) -> str:
    old, tail, attr = m.group(1), m.group(2) or "", m.group(3)
    if old in PACKAGES and attr in NEW_SUBMODULES.get(old, ()):  # already new
        return m.group(0)
    after = m.string[m.end() : m.end() + 80]
    imported = re.match(r" import \(?\s*(\w+)", after)
    if old in PACKAGES and imported and imported.group(1) in NEW_SUBMODULES[old]:
        return m.group(0)  # from heritage.survey import pipeline: already new
    if old in ("kernel", "io", "model", "training"):
        return m.group(0)
    return f"heritage.{MOVES[old]}{tail}"


SHIELD = "heritage\x00"  # kept from the dotted rewrite, then put back


def _from_heritage(m: re.Match) -> str:
    indent, old, alias = m.group(1), m.group(2), m.group(4) or m.group(2)
    pkg, _, mod = MOVES[old].rpartition(".")
    suffix = f" as {alias}" if alias != mod else ""
    if not pkg:
        return f"{indent}from heritage import {mod}{suffix}"
    return f"{indent}from {SHIELD}.{pkg} import {mod}{suffix}"


_REL_FROM = re.compile(r"^(\s*)from \.(\w+) import ", re.M)
_REL_DOT = re.compile(r"^(\s*)from \. import (.+)$", re.M)


def _relative(text: str) -> str:
    def rel_from(m: re.Match) -> str:
        if m.group(2) not in MOVES:
            return m.group(0)
        return f"{m.group(1)}from {SHIELD}.{MOVES[m.group(2)]} import "

    def rel_dot(m: re.Match) -> str:
        indent, rest = m.group(1), m.group(2).strip()
        out = []
        for part in rest.split(","):
            bits = part.split()
            name = bits[0]
            if name not in MOVES and name != "__version__":
                return m.group(0)
            alias = bits[2] if len(bits) == 3 else name
            if name == "__version__":
                out.append(f"{indent}from heritage import __version__")
                continue
            pkg, _, mod = MOVES[name].rpartition(".")
            suffix = f" as {alias}" if alias != mod else ""
            out.append(f"{indent}from {SHIELD}.{pkg} import {mod}{suffix}")
        return "\n".join(out)

    text = _REL_FROM.sub(rel_from, text)
    return _REL_DOT.sub(rel_dot, text)


def rewrite(text: str, relative: bool = False) -> str:
    for old, (module, path) in TO_RESEARCH.items():
        text = re.sub(rf"\bheritage\.{old}\b", module, text)
        text = re.sub(rf"^(\s*)from \.{old} import ", rf"\1from {module} import ", text, flags=re.M)
        text = text.replace(f"core/{old}.py", path)
    if relative:
        text = _relative(text)
    text = _FROM_HERITAGE.sub(_from_heritage, text)
    text = _DOTTED.sub(_dotted, text)
    text = _PATH.sub(lambda m: new_path(m.group(1)), text)
    text = text.replace(SHIELD, "heritage")
    text = text.replace("core/survey/templates", "core/survey/templates")
    return text


TEXT_SUFFIXES = {".py", ".md", ".sh", ".toml", ".txt", ".ini", ".cfg", ".j2", ".json", ".csv", ""}


def tracked() -> list[Path]:
    out = subprocess.run(["git", "ls-files"], capture_output=True, text=True, check=True).stdout
    return [Path(p) for p in out.splitlines()]


def main(argv: list[str]) -> int:
    rewrite_only = "--move" not in argv
    files = [Path(a) for a in argv if not a.startswith("--")]
    if rewrite_only and not files:
        print("give the files to rewrite (e.g. those your branch added or changed)")
        return 2
    moved: set[Path] = set()
    if not rewrite_only:
        for pkg in PACKAGES:
            Path("core", pkg).mkdir(exist_ok=True)
        for old in MOVES:
            src, dst = Path(f"core/{old}.py"), Path(new_path(old))
            subprocess.run(["git", "mv", str(src), str(dst)], check=True)
            moved.add(dst)
        subprocess.run(["git", "mv", "core/survey/templates", "core/survey/templates"], check=True)
        for pkg, doc in PACKAGES.items():
            init = Path("core", pkg, "__init__.py")
            if doc is not None:
                init.write_text(f'"""{doc}"""\n')
                subprocess.run(["git", "add", str(init)], check=True)
    for path in files or tracked():
        if path.suffix not in TEXT_SUFFIXES or not path.is_file() or path.name == "pyproject.toml":
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        is_core = path.parts[0] == "core" and path.suffix == ".py"
        # relative imports: in the moved modules, and in modules still directly in core/
        flat = len(path.parts) == 2
        new = rewrite(text, relative=is_core and (path in moved or (rewrite_only and flat)))
        if new != text:
            path.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
