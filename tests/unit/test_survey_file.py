"""Opening a survey GeoPackage (heritage.io.surveyfile), issue 25 items 2 and 5.

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
from factories import geotagged_folder
from helpers import classify_folder, cli_line, one_error
from PIL import Image

from heritage.survey.pipeline import connect_gpkg

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def survey(tmp_path_factory, flag_model: Path) -> Path:
    """A classified survey of 3 photos, every one flagged (threshold 0)."""
    d = tmp_path_factory.mktemp("s")
    out = d / "survey.gpkg"
    classify_folder(geotagged_folder(d / "photos"), out, flag_model)
    return out


def test_a_second_writer_is_refused_while_the_first_holds_the_lock(
    tmp_path: Path, flag_model: Path, capsys
) -> None:
    """Item 2: two runs at once both succeeded and stored every photo twice."""
    from heritage.io.surveyfile import SurveyBusyError, lock_path

    d = geotagged_folder(tmp_path / "p")
    out = tmp_path / "c.gpkg"
    holder = subprocess.Popen(  # another process writing the same GeoPackage
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys
            from heritage.io.surveyfile import open_survey
            with open_survey({str(out)!r}, create=True):
                print("holding", flush=True)
                sys.stdin.read()
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(SurveyBusyError, match="another heritage command is writing"):
            classify_folder(d, out, flag_model)
        code, err = cli_line(capsys, "classify", str(d), "-o", str(out), "--model", str(flag_model))
        assert code == 1 and one_error(err) and "wait until it has finished" in err
    finally:
        holder.communicate("")
    assert lock_path(out).name == ".c.gpkg.lock"
    summary = classify_folder(d, out, flag_model)  # the lock went with the other process
    assert summary.classified == 3


def test_duplicates_are_refused_by_the_schema_and_repaired_on_open(
    tmp_path: Path, survey: Path, flag_model: Path
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

    summary = classify_folder(survey.parent / "photos", out, flag_model)
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
    assert code == 1 and err.startswith("Error: ") and one_error(err), err
    assert words in err and "heritage classify" in err


def test_truncated_survey(tmp_path: Path, survey: Path, capsys) -> None:
    """Item 5: a truncated GeoPackage gave a traceback."""
    cut = tmp_path / "cut.gpkg"
    cut.write_bytes(survey.read_bytes()[: survey.stat().st_size // 2])
    code, err = cli_line(capsys, "group", str(cut))
    assert code == 1 and "is truncated" in err and one_error(err)


def test_read_only_survey_is_left_untouched(tmp_path: Path, survey: Path, capsys) -> None:
    """Item 5: a read-only GeoPackage gave a traceback (root writes it anyway: the
    missing write bits are respected)."""
    ro = tmp_path / "ro.gpkg"
    shutil.copy(survey, ro)
    ro.chmod(0o444)
    before = ro.read_bytes()
    for command in ("group", "route"):
        code, err = cli_line(capsys, command, str(ro))
        assert code == 1 and "is read-only" in err and one_error(err)
    assert ro.read_bytes() == before


def test_route_without_observations_and_group_without_flagged(
    tmp_path: Path, survey: Path, capsys
) -> None:
    """Item 5: route on a GeoPackage without observations, group without the flagged
    column: tracebacks."""
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
    assert code == 1 and "has no 'observations' layer" in err and one_error(err)

    no_flag = tmp_path / "no_flag.gpkg"
    shutil.copy(survey, no_flag)
    con = sqlite3.connect(no_flag)
    with con:
        con.execute('DROP INDEX "observations_sha256_unique"')
        con.execute("ALTER TABLE observations DROP COLUMN flagged")
    con.close()
    code, err = cli_line(capsys, "group", str(no_flag))
    assert code == 1 and "no column(s) flagged" in err and one_error(err)


class _FullDisk:
    """A sqlite3 connection whose writes fail as SQLite fails when the disk is full."""

    def __init__(self, con: sqlite3.Connection) -> None:
        self._con = con

    def __getattr__(self, name: str):
        return getattr(self._con, name)

    def __enter__(self):
        return self._con.__enter__()

    def __exit__(self, *exc):
        return self._con.__exit__(*exc)

    def execute(self, sql: str, *args):
        if sql.lstrip().upper().startswith(("UPDATE", "INSERT", "DELETE")):
            raise sqlite3.OperationalError("database or disk is full")
        return self._con.execute(sql, *args)

    def executemany(self, sql: str, *args):
        raise sqlite3.OperationalError("database or disk is full")


def test_full_disk_while_prioritising_or_styling_is_one_line(
    tmp_path: Path, survey: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Items 5 and 7: "Failed to commit transaction" traceback while prioritising, and the
    hint "is it open for editing elsewhere?" when the disk was full."""
    import heritage.io.styles
    import heritage.survey.pipeline

    out = tmp_path / "full.gpkg"
    shutil.copy(survey, out)
    connect = heritage.survey.pipeline.connect_gpkg
    monkeypatch.setattr(heritage.survey.pipeline, "connect_gpkg", lambda p: _FullDisk(connect(p)))
    code, err = cli_line(capsys, "group", str(out))
    assert code == 1 and one_error(err)
    assert "the disk holding" in err and "is full" in err and "free some space" in err
    monkeypatch.undo()

    real = sqlite3.connect
    monkeypatch.setattr(heritage.io.styles.sqlite3, "connect", lambda p: _FullDisk(real(p)))
    with pytest.raises(Exception, match="is full") as styled:
        heritage.io.styles.write_default_styles(out)
    assert "open for editing elsewhere" not in str(styled.value)


def test_start_empty_or_with_latitude_and_longitude_swapped(survey: Path, capsys) -> None:
    """Items 5 and 7: --start "" printed "Error: : unsupported vector format"; a swapped
    --start planned a route from the other side of the world without a word."""
    code, err = cli_line(capsys, "route", str(survey), "--start", "")
    assert code == 1 and "the start is empty: give LON,LAT" in one_error(err)
    code, err = cli_line(capsys, "route", str(survey), "--start", "43.4631,11.8801")
    assert code == 1 and one_error(err)
    assert "latitude and longitude swapped: give LON,LAT" in err and "11.8801,43.4631" in err
    code, err = cli_line(capsys, "route", str(survey), "--start", "11.8801,43.4631")
    assert code == 0, err


def test_footprints_that_are_points_or_swapped(tmp_path: Path, survey: Path, capsys) -> None:
    """Item 7: point footprints and footprints with latitude and longitude swapped were
    accepted without a word."""
    import geopandas as gpd
    from shapely.geometry import Point, box

    points = tmp_path / "points.geojson"
    gpd.GeoDataFrame(geometry=[Point(11.88, 43.463)], crs="EPSG:4326").to_file(points)
    code, err = cli_line(capsys, "group", str(survey), "--footprints", str(points))
    assert code == 1 and "not building polygons" in err and one_error(err)

    swapped = tmp_path / "swapped.geojson"
    house = box(43.4625, 11.8795, 43.4640, 11.8810)  # x = latitude, y = longitude
    gpd.GeoDataFrame(geometry=[house], crs="EPSG:4326").to_file(swapped)
    code, err = cli_line(capsys, "group", str(survey), "--footprints", str(swapped))
    assert code == 1 and "latitude and longitude swapped" in err and one_error(err)


def test_an_output_left_empty_by_a_kill_is_started_again(tmp_path: Path, flag_model: Path) -> None:
    """A run killed while GDAL creates the file leaves 0 bytes; the same command must
    start it again, not refuse it as "not a GeoPackage"."""
    d = geotagged_folder(tmp_path / "p", n=2)
    out = tmp_path / "e.gpkg"
    out.write_bytes(b"")
    assert classify_folder(d, out, flag_model).classified == 2
    half = tmp_path / "half.gpkg"  # GDAL killed after its first metadata table
    con = sqlite3.connect(half)
    con.execute("CREATE TABLE gpkg_spatial_ref_sys (srs_id INTEGER)")
    con.commit()
    con.close()
    assert classify_folder(d, half, flag_model).classified == 2
    _plain_sqlite(tmp_path / "t.gpkg")  # a database with a table is not discarded
    with pytest.raises(Exception, match="not a GeoPackage"):
        classify_folder(d, tmp_path / "t.gpkg", flag_model)
    assert (tmp_path / "t.gpkg").exists()
