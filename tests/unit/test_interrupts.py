"""Ctrl-C/SIGTERM in long commands: stop after the current batch, keep a checkpoint, resume."""

from __future__ import annotations

import os
import signal

import pytest
import torch
from click.testing import CliRunner
from factories import image_folder

from heritage.kernel.errors import CancelledError
from heritage.kernel.interrupts import EXIT_CANCELLED, resumable_run, stop_on_signals
from heritage.kernel.progress import NullProgress, TqdmProgress


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


def test_sigterm_during_cli_training_checkpoints_then_resume_finishes(tmp_path, monkeypatch):
    """A SIGTERM in the middle of stage 1 stops `heritage train` with exit 130, leaving a
    mid-epoch checkpoint; `--resume` continues from that batch instead of starting over."""
    from heritage.cli import cli
    from heritage.model.card import load_model

    a = image_folder(tmp_path, "dsA", groups=True)
    b = image_folder(tmp_path, "dsB", seed=1)
    model_dir, run = tmp_path / "model", tmp_path / "run"
    args = ["train", str(a), str(b), "-o", str(model_dir), "--run-dir", str(run),
            "--image-size", "48", "--epochs", "2", "--batch-size", "4", "--skip-stage2",
            "--checkpoint-every", "0", "--workers", "0", "--device", "cpu"]  # fmt: skip
    state = {"stage": "", "batches": 0}
    start, step = TqdmProgress.start, TqdmProgress.step

    def spy_start(self, stage, total=None):
        state["stage"] = stage
        start(self, stage, total)

    def killing_step(self, n=1, **info):
        step(self, n, **info)
        if state["stage"] == "stage1 epoch 1/2" and n == 1:
            state["batches"] += 1
            if state["batches"] == 3:  # as if the user pressed Ctrl-C here
                os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(TqdmProgress, "start", spy_start)
    monkeypatch.setattr(TqdmProgress, "step", killing_step)
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == EXIT_CANCELLED, result.output
    assert "--resume" in result.output and str(run) in result.output
    ck = torch.load(run / "stage1_checkpoint.pt", weights_only=True)
    assert (ck["epoch"], ck["batch"]) == (0, 3)  # written on the way out, not at an epoch end
    assert not (model_dir / "model.json").exists()

    monkeypatch.setattr(TqdmProgress, "step", step)
    result = CliRunner().invoke(cli, [*args, "--resume"])
    assert result.exit_code == 0, result.output
    fit_info = load_model(model_dir).card.training["stage1_fit"]
    assert tuple(fit_info["resumed_from"]) == (0, 3) and fit_info["epochs_run"] == 2
