"""The plugin asks the backend which commands it has (`heritage info --json`), falls
back to `heritage <name> --help` for a backend older than that list, and shows the
backend's own summary lines."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.qgis


def _fake_backend(folder: Path, info: dict, unavailable: tuple[str, ...] = ()) -> Path:
    """A `heritage` that answers `info --json` with ``info``, `<name> --help` (saying
    "not available in this version" for ``unavailable``), and logs its arguments."""
    exe = folder / "heritage"
    log = folder / "calls.txt"
    exe.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        f"open({str(log)!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')\n"
        "if sys.argv[1:] == ['info', '--json']:\n"
        f"    print(json.dumps({info!r}))\n"
        f"elif sys.argv[1] in {list(unavailable)!r}:\n"
        "    print('Usage: heritage x (not available in this version)')\n"
        "else:\n"
        "    print('Usage: heritage x')\n"
    )
    exe.chmod(0o755)
    return exe


def _calls(exe: Path) -> list[str]:
    return (exe.parent / "calls.txt").read_text().splitlines()


def test_the_commands_come_from_heritage_info(tmp_path: Path) -> None:
    from heritage_qgis import backend

    exe = str(_fake_backend(tmp_path, {"version": "9", "commands": ["classify", "info"]}))
    assert backend.has_command("classify", exe)
    assert not backend.has_command("review", exe)
    assert _calls(Path(exe)) == ["info --json"]  # asked once, no --help probing


def test_an_older_backend_is_probed_with_help(tmp_path: Path) -> None:
    from heritage_qgis import backend

    exe = str(_fake_backend(tmp_path, {"version": "0.0.9"}, unavailable=("review",)))
    assert backend.has_command("classify", exe)
    assert not backend.has_command("review", exe)
    assert _calls(Path(exe)) == ["info --json", "classify --help", "review --help"]


def test_the_real_backend_lists_every_command_the_plugin_runs(backend_exe: Path) -> None:
    from heritage_qgis import backend
    from heritage_qgis.algorithms import all_algorithms

    info, why = backend.backend_info(backend_exe)
    assert info is not None, why
    used = {alg.COMMAND for alg in all_algorithms() if alg.COMMAND} | {"review"}
    assert used <= set(info["commands"])
    assert all(backend.has_command(c, str(backend_exe)) for c in used)


def test_the_log_shows_the_backends_summary_lines() -> None:
    from heritage_qgis.alg_survey import summary_lines
    from heritage_qgis.review import summary_text

    lines = ["GeoPackage: s.gpkg", "found 3 image file(s)", "done in 1.0 s"]
    assert summary_lines({"classified": 3, "lines": lines}) == lines
    assert summary_text({"buildings": 2, "lines": lines[:2]}) == "\n".join(lines[:2])
    # an older backend sends counts only
    old = summary_lines({"classified": 3, "flagged": 1, "buildings": 1, "route_m": 12.4})
    assert old == ["classified 3 photo(s), 1 flagged; 1 building(s) to inspect, route 12 m"]
