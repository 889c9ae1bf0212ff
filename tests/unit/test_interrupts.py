"""Ctrl-C/SIGTERM in long commands: stop after the current batch, keep a checkpoint, resume.

A SIGTERM in the middle of `heritage train` end to end: ``tests/integration/test_train.py``.
"""

from __future__ import annotations

import os
import signal

import pytest
import torch

from heritage.kernel.errors import CancelledError
from heritage.kernel.interrupts import EXIT_CANCELLED, resumable_run, stop_on_signals
from heritage.kernel.progress import NullProgress


def test_first_signal_cancels_second_interrupts_and_handlers_are_restored(capsys):
    before = signal.getsignal(signal.SIGTERM)
    progress = NullProgress()
    with stop_on_signals(progress, "after the current photo"):
        os.kill(os.getpid(), signal.SIGTERM)
        assert progress.cancelled
        with pytest.raises(CancelledError):
            progress.check_cancelled()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGTERM) is before
    assert "Stopping after the current photo" in capsys.readouterr().err


def test_resumable_run_turns_a_cancel_into_exit_130_with_the_resume_hint(capsys):
    with pytest.raises(SystemExit) as exc, resumable_run(NullProgress(), "checkpoints in run/"):
        raise CancelledError("cancelled by the user")
    assert exc.value.code == EXIT_CANCELLED
    err = capsys.readouterr().err
    assert "checkpoints in run/" in err and "--resume" in err


def test_loader_workers_ignore_ctrl_c_so_the_main_process_can_checkpoint():
    from heritage.training.data import ignore_sigint, make_loader

    ds = torch.utils.data.TensorDataset(torch.zeros(4, 2))
    assert make_loader(ds, 2, shuffle=True, workers=1).worker_init_fn is ignore_sigint
    assert make_loader(ds, 2, shuffle=True, workers=0).worker_init_fn is None
    old = signal.getsignal(signal.SIGINT)
    try:
        ignore_sigint(0)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, old)


def test_sigterm_while_the_model_loads_stops_cleanly_and_the_rerun_completes(
    tmp_path, capsys, monkeypatch: pytest.MonkeyPatch
):
    """The plugin's cancel (SIGTERM) or a Ctrl-C before the first photo is classified:
    exit 130 with the GeoPackage intact and empty, not a KeyError traceback (an empty
    survey's ``flagged`` column was float, so the priority step selected no columns);
    the signal is sent from the model loading itself, so the window is hit every time."""
    import sqlite3

    from factories import geotagged_folder, tiny_model_dir
    from helpers import cli_line

    from heritage.survey import pipeline

    model = tiny_model_dir(tmp_path / "m", input_size=32, stage2=None, threshold=0.0)
    photos = geotagged_folder(tmp_path / "photos", n=2)
    out = tmp_path / "survey.gpkg"
    args = ("classify", str(photos), "-o", str(out), "--model", str(model), "--device", "cpu")
    load = pipeline._load_classifier

    def load_then_sigterm(*a, **kw):
        loaded = load(*a, **kw)
        os.kill(os.getpid(), signal.SIGTERM)  # handled before this returns
        return loaded

    monkeypatch.setattr(pipeline, "_load_classifier", load_then_sigterm)
    code, err = cli_line(capsys, *args, "--json-progress")
    assert code == EXIT_CANCELLED, err
    assert "Traceback" not in err and "Stopping after the current batch" in err
    assert "Stopped: the 0 photo(s) classified in this run are in" in err

    def stored() -> int:
        con = sqlite3.connect(out)
        try:
            assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            return con.execute("SELECT COUNT(*) FROM observations").fetchone()[0]
        finally:
            con.close()

    assert stored() == 0
    monkeypatch.setattr(pipeline, "_load_classifier", load)
    code, err = cli_line(capsys, *args)
    assert code == 0, err
    assert stored() == 2
