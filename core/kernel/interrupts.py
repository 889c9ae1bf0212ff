"""Ctrl-C and SIGTERM for long ``heritage`` commands: stop at a safe point, keep the work.

The first SIGINT or SIGTERM asks the running job to stop (``progress.cancel()``). Library
loops notice it at their next ``progress.check_cancelled()`` - between photos, between
training batches - and a training loop writes its checkpoint before it stops. A second
signal interrupts at once (KeyboardInterrupt). The command then exits with status 130
and says how to continue.

Only click and the standard library are imported, so the light commands stay light.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterator
from typing import Any

import click

from heritage.kernel.errors import CancelledError
from heritage.kernel.progress import NullProgress

EXIT_CANCELLED = 130
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _interactive() -> bool:
    """True when stderr is a terminal (a person who can press Ctrl-C reads it)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


@contextlib.contextmanager
def stop_on_signals(progress: NullProgress, when: str) -> Iterator[None]:
    """While the block runs, the first SIGINT/SIGTERM cancels ``progress``.

    ``when`` completes the sentence shown to the user: "Stopping {when} ...". A second
    signal raises KeyboardInterrupt. The previous handlers are restored on exit. Outside
    the main thread (e.g. a test runner's worker) handlers cannot be installed and the
    block runs without them.
    """
    previous: dict[int, Any] = {}

    def handler(signum: int, frame: Any) -> None:
        if progress.cancelled:
            raise KeyboardInterrupt
        progress.cancel()
        # the Ctrl-C hint only where a terminal can send one (not to the QGIS plugin)
        again = " (press Ctrl-C again to stop at once)" if _interactive() else ""
        click.echo(f"\nStopping {when}{again}...", err=True)

    for sig in _SIGNALS:
        with contextlib.suppress(ValueError):  # not the main thread
            previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def resumable_run(progress: NullProgress, what_is_kept: str) -> Iterator[None]:
    """Run a resumable training job: a signal stops it after the current batch.

    On cancellation the user reads ``Stopped: {what_is_kept}; run the same command with
    --resume to continue.`` and the process exits with status 130.
    """
    with stop_on_signals(progress, "after the current batch; a checkpoint is written"):
        try:
            yield
        except CancelledError:
            click.echo(
                f"Stopped: {what_is_kept}; run the same command with --resume to continue.",
                err=True,
            )
            sys.exit(EXIT_CANCELLED)
