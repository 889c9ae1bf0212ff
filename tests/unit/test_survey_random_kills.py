"""Fault injection: ``heritage classify`` killed at seeded random moments (issue 25).

The command's console entry point (:func:`heritage.cli.main`, the same code the
``heritage`` script runs) is forked from this already-initialised test process, so a
run costs the model load and the work, not an interpreter and torch start-up (the
real-process kill is ``test_survey_kill.py``'s). It is killed at least ten times at
random moments (mostly SIGKILL, sometimes SIGTERM or SIGINT): after a seeded random
number of its JSON progress events plus a seeded random delay, i.e. while it loads
the model, classifies, commits a batch, prioritises or writes the styles. After each
kill the GeoPackage must be intact (``PRAGMA integrity_check``) with every photo at
most once and every referenced overlay on disk; the run that finally completes must
hold every photo exactly once with the scores of an uninterrupted run.
"""

from __future__ import annotations

import os
import select
import signal
import sqlite3
import sys
import time
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import torch
from PIL import Image

from heritage.cli import main
from heritage.modelcard import ModelCard, StageCard, save_model
from heritage.modelzoo import build_model

SEED = 25
MIN_KILLS = 10
MAX_RUNS = 40
N_PHOTOS = 12
SIGNALS = (signal.SIGKILL,) * 6 + (signal.SIGTERM, signal.SIGINT)
COMPARED = (
    "p_stage1", "p_final", "defect_area_fraction", "priority_score",
)  # fmt: skip
SAME = ("flagged", "priority_category", "building_id", "n_flagged_on_building", "status")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """Stage 1 only (mobilenet_v3_small at 32 px), threshold 0: every photo is flagged."""
    torch.manual_seed(0)
    card = ModelCard(
        model_id="kill-test", version="0.0.1", input_size=32,
        mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), positive_labels=("crack",),
        stage1=StageCard("mobilenet_v3_small", "", "", 3, ("crack", "no_crack", "other")),
        stage2=None, cam_layer="features.12", cam_method="gradcam", threshold=0.0,
        decision_stage="stage1",
    )  # fmt: skip
    path = tmp_path_factory.mktemp("model") / "m"
    save_model(path, card, build_model("mobilenet_v3_small", 3).eval())
    return path


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory) -> Path:
    """12 tiny JPEGs (even ones geotagged a few metres apart) and one broken file."""
    d = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(SEED)
    for i in range(N_PHOTOS):
        exif = Image.Exif()
        if i % 2 == 0:
            exif[0x8825] = {1: "N", 2: (43.0, 27.0, 50.0 + i), 3: "E", 4: (11.0, 52.0, 47.0 + i)}
        arr = rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)
        Image.fromarray(arr).save(d / f"p{i:02d}.jpg", exif=exif, quality=90)
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff not a photo")
    return d


def _fork_classify(photo_dir: Path, out: Path, model_dir: Path) -> tuple[int, int]:
    """Start ``heritage classify`` in a forked child; (pid, fd of its JSON progress)."""
    args = [
        "-q", "classify", str(photo_dir), "-o", str(out), "--model", str(model_dir),
        "--device", "cpu", "--batch-size", "2", "--json-progress",
    ]  # fmt: skip
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: run the command, never return into pytest
        code = 99
        try:
            os.close(read_fd)
            os.dup2(write_fd, 1)
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 2)
            sys.stdout = os.fdopen(1, "w", buffering=1)
            sys.stderr = os.fdopen(2, "w", buffering=1)
            sys.argv = ["heritage", *args]
            try:
                main()
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            sys.stdout.flush()
        finally:
            os._exit(code)
    os.close(write_fd)
    return pid, read_fd


def _run(photo_dir: Path, out: Path, model_dir: Path, delay: float | None, sig: int) -> int:
    """Run once; ``delay`` seconds after the start send ``sig`` (``None``: never).
    Returns the wait status as ``subprocess`` gives it: -signal or the exit code."""
    pid, fd = _fork_classify(photo_dir, out, model_dir)
    start = time.monotonic()
    kill_at = float("inf") if delay is None else start + delay
    try:
        while True:
            now = time.monotonic()
            assert now < start + 120, "the command did not finish in 120 s"
            if now >= kill_at:
                os.kill(pid, sig)
                kill_at = float("inf")
            # wait for its progress (read, so that it never blocks on a full pipe) or
            # for the moment of the kill, whichever comes first
            ready, _, _ = select.select([fd], [], [], min(1.0, max(0.0, kill_at - now)))
            if ready and not os.read(fd, 65536):  # the child closed stdout: it ended
                break
    finally:
        os.close(fd)
        _, status = os.waitpid(pid, 0)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def _check_intact(out: Path) -> int:
    """The GeoPackage after a kill: intact, every photo at most once, overlays on disk."""
    if not out.exists():
        return 0
    con = sqlite3.connect(out)  # rolls back a hot journal left by the kill
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        tables = {r[0] for r in con.execute("SELECT table_name FROM gpkg_contents")}
        if "observations" not in tables:
            return 0
        rows = con.execute("SELECT sha256, overlay_path FROM observations").fetchall()
        invalid = con.execute("SELECT path, sha256 FROM invalid_photos").fetchall()
    finally:
        con.close()
    shas = [sha for sha, _ in rows]
    assert len(shas) == len(set(shas)), "a photo is stored twice"
    assert len(invalid) == len(set(invalid)), "an invalid file is listed twice"
    for _, rel in rows:
        assert (out.parent / rel).is_file(), f"{rel} is referenced but missing"
    return len(rows)


def _table(out: Path):
    obs = pyogrio.read_dataframe(out, layer="observations", read_geometry=False)
    return obs.set_index("file_name").sort_index()


def _compare(out: Path, expected) -> None:
    """``out`` holds every photo exactly once with the scores of the uninterrupted run."""
    assert _check_intact(out) == N_PHOTOS
    got = _table(out)
    assert list(got.index) == list(expected.index)  # every photo exactly once
    for col in COMPARED:
        np.testing.assert_allclose(got[col], expected[col], atol=1e-5, err_msg=col)
    for col in SAME:
        assert got[col].fillna(-1).tolist() == expected[col].fillna(-1).tolist(), col
    bad = pyogrio.read_dataframe(out, layer="invalid_photos", read_geometry=False)
    assert list(bad["file_name"]) == ["broken.jpg"]


def test_random_kills_lose_nothing_and_double_nothing(
    photo_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    reference = tmp_path / "ref" / "survey.gpkg"
    started = time.monotonic()
    assert _run(photo_dir, reference, model_dir, None, 0) == 0
    duration = time.monotonic() - started  # kills fall anywhere in a whole run
    expected = _table(reference)
    assert len(expected) == N_PHOTOS and expected["flagged"].all()

    rng = np.random.default_rng(SEED)
    order = [SIGNALS[i] for i in rng.permutation(len(SIGNALS))]
    kills, completed, outcomes = 0, 0, []
    out = tmp_path / "killed_0" / "survey.gpkg"
    for run in range(MAX_RUNS):
        if kills >= MIN_KILLS:
            break
        sig, delay = order[run % len(order)], float(rng.uniform(0.0, duration))
        code = _run(photo_dir, out, model_dir, delay, sig)
        outcomes.append((signal.Signals(sig).name, round(delay, 2), code, _check_intact(out)))
        assert code in (0, 130, -signal.SIGKILL, -signal.SIGTERM), outcomes  # never an error
        if code == 0:  # finished before the signal: check it, then kill a fresh survey
            _compare(out, expected)
            completed += 1
            out = tmp_path / f"killed_{completed}" / "survey.gpkg"
        else:
            kills += 1
    print("signal, delay s, exit, photos stored:", *outcomes, sep="\n")
    assert kills >= MIN_KILLS, outcomes
    assert _run(photo_dir, out, model_dir, None, 0) == 0, outcomes  # the same command completes
    _compare(out, expected)
