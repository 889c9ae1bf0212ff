"""Fault injection: ``heritage classify`` killed at seeded random moments (issue 25).

The command's console entry point (:func:`heritage.cli.main`, the code the ``heritage``
script runs) is forked from a small single-threaded "zygote" process that has imported
heritage, torch and geopandas once, so a run costs the model load and the work, not an
interpreter and torch start-up (the kill of a whole ``heritage`` process is
``test_survey_kill.py``'s). Forking from the test process itself could deadlock: other
tests leave threads behind. Runs are killed at least ten times (mostly SIGKILL,
sometimes SIGTERM or SIGINT) at a seeded random time within one run's duration: while
the model loads, photos are classified, a batch is committed, buildings are
prioritised or styles are written. After each kill the GeoPackage must be intact
(``PRAGMA integrity_check``) with every photo at most once and every referenced overlay
on disk; every run that completes must hold every photo exactly once with the scores
of an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import select
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
from PIL import Image

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
    return tiny_model_dir(
        tmp_path_factory.mktemp("model") / "m",
        model_id="kill-test",
        input_size=32,
        labels=("crack", "no_crack", "other"),
        positives=("crack",),
        stage2=None,
        threshold=0.0,
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
    )


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


#: reads {"args": [...], "log": path} lines; forks the CLI; answers "pid N TASKS", "exit CODE"
#: (99: the command raised something other than SystemExit; the traceback is in the log)
ZYGOTE = r"""
import json, os, sys
import geopandas, networkx, pyogrio, shapely, sklearn.cluster, torch  # noqa: F401
import heritage.survey.buildings, heritage.cli, heritage.cli.classify, heritage.model.explain
import heritage.model.card, heritage.model.predict, heritage.survey.route, heritage.io.styles
import heritage.survey.pipeline

answer = sys.stdout
for line in sys.stdin:
    job = json.loads(line)
    tasks = len(os.listdir("/proc/self/task"))  # 1: nothing can deadlock the child
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            log = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND)
            null = os.open(os.devnull, os.O_RDWR)
            os.dup2(null, 0)
            os.dup2(null, 1)
            os.dup2(log, 2)
            sys.stdout = open(1, "w")
            sys.stderr = open(2, "w", buffering=1)
            sys.argv = ["heritage", *job["args"]]
            try:
                heritage.cli.main()
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:  # exit 99: its traceback goes to the log
                import traceback
                traceback.print_exc()
                sys.stderr.flush()
        finally:
            os._exit(code)
    answer.write(f"pid {pid} {tasks}\n")
    answer.flush()
    _, status = os.waitpid(pid, 0)
    code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    answer.write(f"exit {code}\n")
    answer.flush()
"""


class Zygote:
    """The forking process; :meth:`run` runs ``heritage classify`` once in a child."""

    def __init__(self) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", ZYGOTE], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            bufsize=0, env=env,
        )  # fmt: skip
        self._buffer = b""

    def _line(self, until: float) -> str | None:
        """The next answer line, or None when ``until`` (monotonic) comes first."""
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            left = until - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 4096)
            assert chunk, "the zygote died"
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()

    def run(self, args: list[str], log: Path, delay: float | None, sig: int) -> tuple[int, float]:
        """Run once; ``delay`` s after the start send ``sig`` (``None``: never). Returns
        the exit as ``subprocess`` gives it (-signal or the exit code) and the seconds."""
        self.proc.stdin.write((json.dumps({"args": args, "log": str(log)}) + "\n").encode())
        answer = self._line(time.monotonic() + 120)  # (the first job waits for the imports)
        assert answer and answer.startswith("pid "), answer
        started = time.monotonic()  # the child is running from here
        _, pid, tasks = answer.split()
        assert tasks == "1", f"the zygote has {tasks} threads: a fork could deadlock"
        kill_at = float("inf") if delay is None else started + delay
        while True:
            answer = self._line(min(kill_at, started + 120))
            if answer is not None:
                assert answer.startswith("exit "), answer
                return int(answer.split()[1]), time.monotonic() - started
            if time.monotonic() >= started + 120:
                os.kill(int(pid), signal.SIGKILL)
                pytest.fail(f"the command did not finish in 120 s; see {log}")
            os.kill(int(pid), sig)
            kill_at = float("inf")

    def close(self) -> None:
        """End the zygote (closing its input ends its loop)."""
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def zygote():
    z = Zygote()
    yield z
    z.close()


def _args(photo_dir: Path, out: Path, model_dir: Path) -> list[str]:
    return [
        "classify", str(photo_dir), "-o", str(out), "--model", str(model_dir),
        "--device", "cpu", "--batch-size", "2", "--json-progress",
    ]  # fmt: skip


def _check_intact(out: Path) -> int:
    """The GeoPackage after a kill: intact, every photo at most once, overlays on disk."""
    if not out.exists():
        return 0
    con = sqlite3.connect(out)  # rolls back a hot journal left by the kill
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        names = {r[0] for r in con.execute("SELECT name FROM sqlite_master")}
        if "gpkg_contents" not in names:  # killed while GDAL created the file
            return 0
        tables = {r[0] for r in con.execute("SELECT table_name FROM gpkg_contents")}
        if "observations" not in tables:
            return 0
        rows = con.execute("SELECT sha256, overlay_path FROM observations").fetchall()
        invalid = []  # a kill may fall between the creation of the two layers
        if "invalid_photos" in tables:
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
    photo_dir: Path, model_dir: Path, tmp_path: Path, zygote: Zygote
) -> None:
    log = tmp_path / "stderr.log"
    reference = tmp_path / "ref" / "survey.gpkg"
    code, duration = zygote.run(_args(photo_dir, reference, model_dir), log, None, 0)
    assert code == 0, log.read_text()
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
        code, _ = zygote.run(_args(photo_dir, out, model_dir), log, delay, sig)
        outcomes.append((signal.Signals(sig).name, round(delay, 2), code, _check_intact(out)))
        assert code in (0, 130, -signal.SIGKILL, -signal.SIGTERM), (outcomes, log.read_text())
        if code == 0:  # finished before the signal: check it, then kill a fresh survey
            _compare(out, expected)
            completed += 1
            out = tmp_path / f"killed_{completed}" / "survey.gpkg"
        else:
            kills += 1
    print("signal, delay s, exit, photos stored:", *outcomes, sep="\n")
    assert kills >= MIN_KILLS, outcomes
    code, _ = zygote.run(_args(photo_dir, out, model_dir), log, None, 0)
    assert code == 0, (outcomes, log.read_text())  # the same command completes
    _compare(out, expected)
