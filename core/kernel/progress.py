"""A small progress/cancel protocol for long loops.

Library loops call ``progress.step(...)``; the CLI adapts it to a tqdm bar or JSON
lines, the QGIS plugin to ``QgsFeedback``. ``progress.check_cancelled()`` raises
:class:`~heritage.kernel.errors.CancelledError` once cancellation was requested.
"""

from __future__ import annotations

import json
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO

from heritage.kernel.errors import CancelledError


class Progress(Protocol):
    """What a long-running library function reports to its caller."""

    def start(self, stage: str, total: int | None = None) -> None:
        """A new stage of work begins; ``total`` items are expected (if known)."""

    def step(self, n: int = 1, **info: Any) -> None:
        """``n`` more items of the current stage are done."""

    def message(self, text: str) -> None:
        """A line worth showing to the user."""

    def check_cancelled(self) -> None:
        """Raise CancelledError when the user asked to stop."""


@dataclass
class NullProgress:
    """Reports nothing; cancellation through :meth:`cancel` (thread-safe)."""

    _cancel: threading.Event = field(default_factory=threading.Event)

    def start(self, stage: str, total: int | None = None) -> None:
        pass

    def step(self, n: int = 1, **info: Any) -> None:
        pass

    def message(self, text: str) -> None:
        pass

    def cancel(self) -> None:
        """Ask the running job to stop at its next check."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        """Whether :meth:`cancel` was called."""
        return self._cancel.is_set()

    def check_cancelled(self) -> None:
        if self._cancel.is_set():
            raise CancelledError("cancelled by the user")


class TqdmProgress(NullProgress):
    """A terminal progress bar (tqdm) on stderr."""

    def __init__(self, disable: bool = False) -> None:
        super().__init__()
        self._bar = None
        self._disable = disable

    def start(self, stage: str, total: int | None = None) -> None:
        from tqdm import tqdm

        self.close()
        self._bar = tqdm(
            total=total,
            desc=stage,
            unit="item",
            disable=self._disable,
            file=sys.stderr,
            dynamic_ncols=True,
        )

    def step(self, n: int = 1, **info: Any) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def message(self, text: str) -> None:
        from tqdm import tqdm

        tqdm.write(text, file=sys.stderr)

    def close(self) -> None:
        """Close the current bar."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class JsonLinesProgress(NullProgress):
    """One JSON object per event on a stream (stdout): the protocol the QGIS plugin reads.

    Events: ``{"event": "start", "stage": ..., "total": ...}``,
    ``{"event": "step", "stage": ..., "done": ..., "total": ..., "percent": ...}``,
    ``{"event": "message", "text": ...}``.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__()
        self._stream = stream or sys.stdout
        self._stage = ""
        self._total: int | None = None
        self._done = 0

    def _emit(self, obj: dict[str, Any]) -> None:
        self._stream.write(json.dumps(obj, default=str) + "\n")
        self._stream.flush()

    def start(self, stage: str, total: int | None = None) -> None:
        self._stage, self._total, self._done = stage, total, 0
        self._emit({"event": "start", "stage": stage, "total": total})

    def step(self, n: int = 1, **info: Any) -> None:
        self._done += n
        pct = round(100.0 * self._done / self._total, 1) if self._total else None
        self._emit(
            {
                "event": "step",
                "stage": self._stage,
                "done": self._done,
                "total": self._total,
                "percent": pct,
                **info,
            }
        )

    def message(self, text: str) -> None:
        self._emit({"event": "message", "text": text})
