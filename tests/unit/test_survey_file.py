"""Opening a survey GeoPackage (heritage.surveyfile), issue 25 items 2 and 5.

One writer at a time (a lock that a second process meets), photos unique by sha256 in
the schema, an older file with duplicates repaired on open, and one line that says
what to do for every GeoPackage that ``group``/``route`` cannot use.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pyogrio
import pytest
import torch
from PIL import Image
from test_survey import make_tiny_model
from test_survey_inputs import _photos, _survey, cli_line

from heritage.gpkg import connect_gpkg
from heritage.surveyfile import SurveyBusyError, lock_path


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("model") / "tiny", threshold=0.0)


@pytest.fixture(scope="module")
def survey(tmp_path_factory, model_dir: Path) -> Path:
    """A classified survey of 3 photos, every one flagged (threshold 0)."""
    d = tmp_path_factory.mktemp("s")
    out = d / "survey.gpkg"
    _survey(_photos(d / "photos"), out, model_dir)
    return out


def test_a_second_writer_is_refused_while_the_first_holds_the_lock(
    tmp_path: Path, model_dir: Path, capsys
) -> None:
    """Item 2: two runs at once both succeeded and stored every photo twice."""
    d = _photos(tmp_path / "p")
    out = tmp_path / "c.gpkg"
    holder = subprocess.Popen(  # another process writing the same GeoPackage
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys
            from heritage.surveyfile import open_survey
            with open_survey({str(out)!r}, create=True):
                print("holding", flush=True)
                sys.stdin.read()
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(SurveyBusyError, match="another heritage command is writing"):
            _survey(d, out, model_dir)
        code, err = cli_line(capsys, "classify", str(d), "-o", str(out), "--model", str(model_dir))
        assert code == 1 and err.count("\n") == 1 and "wait until it has finished" in err
    finally:
        holder.communicate("")
    assert lock_path(out).name == ".c.gpkg.lock"
    summary = _survey(d, out, model_dir)  # the lock went with the other process
    assert summary.classified == 3


def test_duplicates_are_refused_by_the_schema_and_repaired_on_open(
    tmp_path: Path, survey: Path, model_dir: Path
) -> None:
    out = tmp_path / "dup.gpkg"
    shutil.copy(survey, out)
    con = connect_gpkg(out)  # with the ST_ functions of the R-tree triggers
    cols = [r[1] for r in con.execute('PRAGMA table_info("observations")') if r[1] != "fid"]
    names = ", ".join(f'"{c}"' for c in cols)
    copy = f"INSERT INTO observations ({names}) SELECT {names} FROM observations"
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
        con.execute(copy)  # the schema itself refuses a second row of the same photo
    con.execute('DROP INDEX "observations_sha256_unique"')  # a file written before it
    with con:
        con.execute(copy)
    con.close()
    assert len(pyogrio.read_dataframe(out, layer="observations")) == 6

    summary = _survey(survey.parent / "photos", out, model_dir)
    assert summary.classified == 0 and summary.observations_total == 3
    assert any("removed 3 duplicate row(s) of 'observations'" in p for p in summary.problems)
    obs = pyogrio.read_dataframe(out, layer="observations")
    assert obs["sha256"].is_unique and (obs["n_flagged_on_building"] == 3).all()


def _plain_sqlite(path: Path) -> Path:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    return path


def _png(path: Path) -> Path:
    Image.new("RGB", (4, 4)).save(path, format="PNG")
    return path


BAD_FILES = {
    "text": (lambda p: (p.write_text("hello"), p)[1], "it is a text file"),
    "zero": (lambda p: (p.write_bytes(b""), p)[1], "empty file (0 bytes)"),
    "png": (_png, "it is a PNG image"),
    "sqlite": (_plain_sqlite, "not a GeoPackage (it has no gpkg_contents table)"),
}


@pytest.mark.parametrize("command", ["group", "route"])
@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_group_and_route_on_what_is_not_a_geopackage_say_so_in_one_line(
    tmp_path: Path, capsys, command: str, kind: str
) -> None:
    """Item 5: tracebacks for a text, zero-byte, PNG or plain SQLite file."""
    make, words = BAD_FILES[kind]
    path = make(tmp_path / "x.gpkg")
    code, err = cli_line(capsys, command, str(path))
    assert code == 1 and err.startswith("Error: ") and err.count("\n") == 1, err
    assert words in err and "heritage classify" in err


def test_truncated_read_only_and_incomplete_surveys(tmp_path: Path, survey: Path, capsys) -> None:
    """Item 5: truncated or read-only GeoPackage, route without observations, group
    without the flagged column: one line each, exit 1, the file untouched."""
    cut = tmp_path / "cut.gpkg"
    cut.write_bytes(survey.read_bytes()[: survey.stat().st_size // 2])
    code, err = cli_line(capsys, "group", str(cut))
    assert code == 1 and "is truncated" in err and err.count("\n") == 1

    ro = tmp_path / "ro.gpkg"
    shutil.copy(survey, ro)
    ro.chmod(0o444)
    before = ro.read_bytes()
    for command in ("group", "route"):
        code, err = cli_line(capsys, command, str(ro))
        assert code == 1 and "is read-only" in err and err.count("\n") == 1
    assert ro.read_bytes() == before

    no_obs = tmp_path / "no_obs.gpkg"
    shutil.copy(survey, no_obs)
    pyogrio.write_dataframe(  # same file, observations layer dropped through GDAL
        pyogrio.read_dataframe(no_obs, layer="flagged_buildings"), no_obs,
        layer="flagged_buildings",
    )  # fmt: skip
    con = sqlite3.connect(no_obs)
    with con:
        con.execute("DELETE FROM gpkg_contents WHERE table_name = 'observations'")
    con.close()
    code, err = cli_line(capsys, "route", str(no_obs))
    assert code == 1 and "has no 'observations' layer" in err and err.count("\n") == 1

    no_flag = tmp_path / "no_flag.gpkg"
    shutil.copy(survey, no_flag)
    con = sqlite3.connect(no_flag)
    with con:
        con.execute('DROP INDEX "observations_sha256_unique"')
        con.execute("ALTER TABLE observations DROP COLUMN flagged")
    con.close()
    code, err = cli_line(capsys, "group", str(no_flag))
    assert code == 1 and "no column(s) flagged" in err and err.count("\n") == 1
