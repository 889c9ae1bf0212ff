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
