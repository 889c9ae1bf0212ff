"""A real SIGKILL in the middle of ``heritage classify`` leaves a valid GeoPackage.

The CLI runs in a child process over 40 small generated photos (20 geotagged around
Arezzo, 20 without GPS) with batch size 4; it is killed once its JSON progress says
that observations were committed. The GeoPackage must pass ``PRAGMA
integrity_check``, hold a consistent prefix of the photos (sorted order, whole
batches) with their overlay files, and a re-run must complete it without
duplicates. SIGTERM, in turn, must stop cleanly with exit status 130.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyogrio
import pytest
from factories import tiny_model_dir
from helpers import one_torch_thread
from PIL import Image

from heritage.survey.pipeline import ClassifyConfig, run_survey

N_PHOTOS = 40
BATCH = 4
HERITAGE = Path(sys.executable).with_name("heritage")
DEADLINE_S = 120.0


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return tiny_model_dir(tmp_path_factory.mktemp("kill_model") / "m", threshold=0.0)


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory) -> Path:
    """40 distinct 80x60 JPEGs; even ones geotagged a few metres apart in Arezzo."""
    d = tmp_path_factory.mktemp("kill_photos")
    rng = np.random.default_rng(1)
    for i in range(N_PHOTOS):
        arr = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
        exif = Image.Exif()
        if i % 2 == 0:
            exif[0x8825] = {
                1: "N", 2: (43.0, 27.0, 50.0 + i / 10), 3: "E", 4: (11.0, 52.0, 47.0 + i / 10)
            }  # fmt: skip
        Image.fromarray(arr).save(d / f"photo_{i:02d}.jpg", exif=exif, quality=90)
    return d


def _command(photo_dir: Path, out: Path, model_dir: Path) -> list[str]:
    exe = [str(HERITAGE)] if HERITAGE.exists() else [sys.executable, "-m", "heritage.cli"]
    return [
        *exe, "-q", "classify", str(photo_dir), "-o", str(out), "--model", str(model_dir),
        "--device", "cpu", "--batch-size", str(BATCH), "--json-progress",
    ]  # fmt: skip


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "QT_QPA_PLATFORM": "offscreen"}


def _run_until_written(cmd: list[str], min_written: int, sig: int) -> subprocess.Popen:
    """Start ``cmd``, read its JSON progress, send ``sig`` once ``min_written`` rows are in."""
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env()
    )
    deadline = time.monotonic() + DEADLINE_S
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if time.monotonic() > deadline:
                pytest.fail("the child never reported enough written observations")
            if not line.startswith("{"):
                continue
            event = json.loads(line)
            if event.get("event") == "step" and event.get("written", 0) >= min_written:
                proc.send_signal(sig)
                break
        proc.wait(timeout=DEADLINE_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc


def _check_prefix(out: Path, photo_dir: Path) -> list[str]:
    with sqlite3.connect(out) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    obs = pyogrio.read_dataframe(out, layer="observations", fid_as_index=True)
    names = list(obs.sort_index()["file_name"])
    expected = sorted(p.name for p in photo_dir.iterdir())
    assert names == expected[: len(names)]  # a consistent prefix, in order
    for rel in obs["overlay_path"]:
        assert (out.parent / rel).is_file()
    return names


def test_sigkill_leaves_a_valid_prefix_and_rerun_completes(
    photo_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "killed.gpkg"
    proc = _run_until_written(_command(photo_dir, out, model_dir), 2 * BATCH, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    names = _check_prefix(out, photo_dir)
    assert 2 * BATCH <= len(names) < N_PHOTOS and len(names) % BATCH == 0

    with one_torch_thread():
        summary = run_survey(
            ClassifyConfig((photo_dir,), out, model_dir=model_dir, device="cpu", batch_size=BATCH)
        )
    assert summary.classified == N_PHOTOS - len(names)
    assert summary.already_classified == len(names)
    obs = pyogrio.read_dataframe(out, layer="observations")
    assert len(obs) == N_PHOTOS and obs["sha256"].is_unique
    assert obs["priority_category"].notna().all()  # prioritised over both runs
    assert (obs["status"] == "no_location").sum() == N_PHOTOS // 2
    buildings = pyogrio.read_dataframe(out, layer="flagged_buildings")
    assert buildings["n_photos"].sum() == N_PHOTOS // 2  # every located photo is on one


def test_sigterm_stops_cleanly_with_exit_130(
    photo_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "stopped.gpkg"
    proc = _run_until_written(_command(photo_dir, out, model_dir), BATCH, signal.SIGTERM)
    assert proc.returncode == 130
    assert proc.stderr is not None and proc.stdout is not None
    err = proc.stderr.read()
    assert "run the same command again" in err
    assert "Ctrl-C again" not in err  # not a terminal: no hint a program cannot follow
    events = [json.loads(line) for line in proc.stdout.read().splitlines() if line[:1] == "{"]
    names = _check_prefix(out, photo_dir)
    assert BATCH <= len(names) < N_PHOTOS
    # buildings, priority and route were computed over the photos kept
    summary = next(e for e in events if e["event"] == "summary")
    assert summary["cancelled"] and summary["observations_total"] == len(names)
    assert events[-1]["event"] == "cancelled"
    obs = pyogrio.read_dataframe(out, layer="observations")
    assert obs["priority_category"].notna().all()
    buildings = pyogrio.read_dataframe(out, layer="flagged_buildings")
    assert summary["buildings"] == len(buildings) >= 1
    assert "inspection_route" in dict(pyogrio.list_layers(out))
