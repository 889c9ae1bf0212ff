"""Find and run the ``heritage`` backend command; read its ``--json-progress`` lines.

QGIS never imports torch or the heritage core: every heavy step runs in the backend's
own process. This module is standard library only (QGIS settings are read lazily), so
it works in a Processing worker thread, in a QgsTask and in plain tests.

Protocol (``heritage.kernel.progress.JsonLinesProgress``): one JSON object per stdout line,
``{"event": "start"|"step"|"message"|"summary"|"cancelled", ...}``; failure is an exit
code != 0 with a line ``Error: <reason>`` on stderr.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

#: QGIS setting (QgsSettings key) holding the backend executable
SETTING_KEY = "heritage/backend_path"
#: environment variable holding the backend executable
ENV_VAR = "HERITAGE_BACKEND"
EXE_NAME = "heritage.exe" if sys.platform == "win32" else "heritage"
#: what to tell a user who has no backend
INSTALL_HINT = (
    "Install it from QGIS: Settings > Options > Heritage > Install the backend (a private "
    "Python environment in your QGIS profile, from a folder of wheels that `make "
    "wheelhouse` builds, or from PyPI once heritage-defects is published there), or "
    "`pip install heritage-defects` into a Python 3.11 environment and choose its "
    "`heritage` command on that page."
)
#: seconds between SIGTERM and SIGKILL after a cancel: a failsafe only. The backend
#: stops after the batch of photos being classified and then still groups the
#: buildings and plans the route over what it kept, which takes seconds to a minute.
GRACE_S = 300.0
#: the stages of ``heritage classify`` and the share of the overall percentage each
#: one covers (other commands' stages cover 0-100 each)
STAGE_SPANS = {
    "Loading the model": (0.0, 8.0),
    "Classifying photos": (8.0, 88.0),
    "Grouping photos per building": (88.0, 92.0),
    "Planning the inspection route": (92.0, 97.0),
    "Writing buildings and route": (97.0, 100.0),
}
#: exit code of a backend run stopped by the user (SIGINT/SIGTERM)
EXIT_CANCELLED = 130


class BackendError(RuntimeError):
    """The backend failed; ``str(exc)`` is its reason (the ``Error: ...`` line)."""

    def __init__(self, message: str, returncode: int | None = None, stderr: str = "") -> None:
        super().__init__(message)
        self.returncode = returncode
        self.stderr = stderr


class BackendNotFoundError(BackendError):
    """No ``heritage`` executable was found; the message says where we looked."""


class BackendCancelled(BackendError):
    """The user cancelled; the backend was stopped (its outputs so far are kept).

    ``result`` is the run's :class:`RunResult`: its ``summary`` (when the backend
    finished its clean stop) says what was kept.
    """

    result: RunResult | None = None


class Listener(Protocol):
    """What the runner reports to (Processing feedback, a QgsTask, a test)."""

    def progress(self, percent: float) -> None:
        """Overall progress of the current stage, 0..100."""

    def stage(self, text: str) -> None:
        """A new stage began."""

    def message(self, text: str) -> None:
        """A line for the user."""

    def log(self, text: str) -> None:
        """A backend log line (stderr) for the log."""

    def is_canceled(self) -> bool:
        """True once the user asked to stop."""

    # optional: ``status(text)``, a one-line state for a status label ("Classifying
    # photos: 12 of 40"); called when the listener has it


class NullListener:
    """Reports nothing and never cancels."""

    def progress(self, percent: float) -> None:
        pass

    def stage(self, text: str) -> None:
        pass

    def message(self, text: str) -> None:
        pass

    def log(self, text: str) -> None:
        pass

    def is_canceled(self) -> bool:
        return False


@dataclass
class RunResult:
    """What a finished backend run returned."""

    command: list[str]
    returncode: int
    events: list[dict[str, Any]] = field(default_factory=list)
    stderr: str = ""

    @property
    def summary(self) -> dict[str, Any] | None:
        """The ``summary`` event (without the ``event`` key), if the backend sent one."""
        for ev in reversed(self.events):
            if ev.get("event") == "summary":
                return {k: v for k, v in ev.items() if k != "event"}
        return None


# ------------------------------------------------------------------ finding it


def _setting_path() -> str | None:
    try:
        from qgis.core import QgsSettings
    except ImportError:  # outside QGIS
        return None
    value = QgsSettings().value(SETTING_KEY, "")
    return str(value) if value else None


def _source_tree_candidate() -> Path | None:
    """``<repo>/.venv/bin/heritage`` when the plugin runs from the source tree (None
    for a plugin installed from the zip: there is no project folder around it)."""
    repo = Path(__file__).resolve().parents[1]
    if not (repo / "pyproject.toml").is_file():
        return None
    sub = "Scripts" if sys.platform == "win32" else "bin"
    return repo / ".venv" / sub / EXE_NAME


def _installed_candidate() -> Path | None:
    """Where the plugin's installer puts the backend (``<profile>/heritage/backend``)."""
    try:
        from qgis.core import QgsApplication
    except ImportError:
        return None
    sub = "Scripts" if sys.platform == "win32" else "bin"
    base = Path(QgsApplication.qgisSettingsDirPath()) / "heritage" / "backend"
    return base / sub / EXE_NAME


def candidates(setting: str | None = None) -> list[tuple[str, str]]:
    """Where the backend is looked for, in order: ``(where, path)``."""
    out: list[tuple[str, str]] = []
    setting = setting if setting is not None else _setting_path()
    if setting:
        out.append((f"QGIS setting {SETTING_KEY}", setting))
    env = os.environ.get(ENV_VAR)
    if env:
        out.append((f"environment variable {ENV_VAR}", env))
    installed = _installed_candidate()
    if installed is not None:
        out.append(("the plugin's backend folder", str(installed)))
    source = _source_tree_candidate()
    if source is not None:
        out.append(("the project's virtualenv", str(source)))
    on_path = shutil.which(EXE_NAME)
    out.append(("PATH", on_path or ""))
    return out


def _usable(path: str) -> bool:
    return bool(path) and os.path.isfile(path) and os.access(path, os.X_OK)


def find_backend(setting: str | None = None) -> str:
    """The ``heritage`` executable: the plugin setting ``heritage/backend_path``, else
    ``$HERITAGE_BACKEND``, else ``heritage`` on PATH, else ``<repo>/.venv/bin/heritage``.

    A setting or variable that names a missing file is an error (not silently skipped):
    the user asked for that one. Raises :class:`BackendNotFoundError`.
    """
    tried = []
    searched = ("PATH", "the project's virtualenv", "the plugin's backend folder")
    for where, path in candidates(setting):
        if where not in searched and path:
            if _usable(path):
                return path
            raise BackendNotFoundError(
                f"The heritage backend set in the {where} ({path}) does not exist or is not "
                f"executable. {INSTALL_HINT}"
            )
        if _usable(path):
            return path
        tried.append(f"{where} ({path or 'not found'})")
    raise BackendNotFoundError(
        f"The heritage backend (the `heritage` command) was not found; looked in: "
        f"{'; '.join(tried)}. {INSTALL_HINT}"
    )


def backend_info(exe: str | Path) -> tuple[dict[str, Any] | None, str]:
    """``heritage info --json`` of ``exe``: ``(its JSON object, "")``, or ``(None, why)``
    when it does not answer with one (not runnable, another program...)."""
    try:
        done = subprocess.run(
            [str(exe), "info", "--json"], capture_output=True, text=True, timeout=120,
            env=_env(), check=False,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"cannot run {exe}: {exc}"
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line), ""
            except ValueError:
                break
    tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or [f"exit {done.returncode}"]
    return None, tail[0]


_COMMANDS_CACHE: dict[tuple[str, float], dict[str, bool]] = {}
_LISTED_CACHE: dict[tuple[str, float], list[str] | None] = {}


def has_command(name: str, exe: str | None = None) -> bool:
    """True when ``heritage <name>`` exists and is available in this backend.

    Asks the backend for the list of its commands (``heritage info --json``, key
    ``commands``); a backend older than that list is asked ``heritage <name> --help``.
    Cached per executable (and its modification time).
    """
    exe = exe or find_backend()
    key = (exe, os.path.getmtime(exe))
    if key not in _LISTED_CACHE:
        info, _ = backend_info(exe)
        listed = (info or {}).get("commands")
        _LISTED_CACHE[key] = [str(c) for c in listed] if isinstance(listed, list) else None
    if (listed := _LISTED_CACHE[key]) is not None:
        return name in listed
    cache = _COMMANDS_CACHE.setdefault(key, {})
    if name not in cache:
        cache[name] = _help_says_available(exe, name)
    return cache[name]


def _help_says_available(exe: str, name: str) -> bool:
    """Whether ``heritage <name> --help`` answers as an available command (backends
    without ``commands`` in ``heritage info --json``)."""
    try:
        done = subprocess.run(
            [exe, name, "--help"],
            capture_output=True,
            text=True,
            timeout=120,
            env=_env(),
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    text = done.stdout + done.stderr
    return done.returncode == 0 and "not available in this version" not in text


# ------------------------------------------------------------------ running it


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("PYTHONIOENCODING", "utf-8")
    # QGIS' own Python settings must not leak into the backend's interpreter
    for key in ("PYTHONPATH", "PYTHONHOME"):
        env.pop(key, None)
    return env


def _pump(stream: Any, sink: queue.Queue, tag: str) -> None:
    try:
        for line in iter(stream.readline, ""):
            sink.put((tag, line.rstrip("\r\n")))
    finally:
        sink.put((tag, None))


def error_reason(stderr_lines: Sequence[str], returncode: int) -> str:
    """The backend's reason for failing: its last ``Error: ...`` line, else its last
    lines of stderr, else the exit code."""
    for line in reversed(stderr_lines):
        if line.startswith("Error:"):
            return line[len("Error:") :].strip()
    tail = [ln for ln in stderr_lines if ln.strip()][-3:]
    if tail:
        return " / ".join(tail)
    return f"the backend stopped with exit code {returncode}"


def overall_percent(stage: str, percent: float) -> float:
    """``percent`` of ``stage`` as a share of the whole run (:data:`STAGE_SPANS`)."""
    lo, hi = STAGE_SPANS.get(stage, (0.0, 100.0))
    return lo + (hi - lo) * max(0.0, min(100.0, percent)) / 100.0


def _status(listener: Listener, text: str) -> None:
    status = getattr(listener, "status", None)
    if callable(status):
        status(text)


def _handle_event(ev: dict[str, Any], listener: Listener) -> None:
    kind = ev.get("event")
    stage = str(ev.get("stage", ""))
    if kind == "start":
        listener.stage(stage)
        listener.progress(overall_percent(stage, 0.0))
        total = ev.get("total")
        _status(listener, f"{stage}: 0 of {total}" if total and total > 1 else f"{stage}...")
    elif kind == "step":
        pct = ev.get("percent")
        if pct is not None:
            listener.progress(overall_percent(stage, float(pct)))
        done, total = ev.get("done"), ev.get("total")
        if total and total > 1:
            _status(listener, f"{stage}: {done} of {total}")
    elif kind == "message":
        listener.message(str(ev.get("text", "")))


class _StopClock:
    """How long the backend's current batch will still take after a cancel.

    The backend reports a step per photo it reads; they come in bursts, with a pause
    while a batch is classified. The last pause longer than :attr:`PAUSE_S` is the
    time of one batch."""

    PAUSE_S = 0.3

    def __init__(self) -> None:
        self.last_step_at: float | None = None
        self.batch_s: float | None = None

    def saw(self, ev: dict[str, Any], now: float) -> None:
        if ev.get("event") == "start":
            self.last_step_at = now
        elif ev.get("event") == "step" and ev.get("written") is not None:
            if self.last_step_at is not None and now - self.last_step_at > self.PAUSE_S:
                self.batch_s = now - self.last_step_at
            self.last_step_at = now

    def text(self, now: float) -> str:
        """The line shown while the backend stops."""
        left = ""
        if self.batch_s is not None and self.last_step_at is not None:
            left = f" (about {max(1.0, self.batch_s - (now - self.last_step_at)):.0f} s left)"
        return (
            f"Stopping: finishing the photos being classified{left}, then grouping the "
            "buildings and planning the route over the photos kept"
        )


def run_backend(
    args: Sequence[str],
    listener: Listener | None = None,
    exe: str | None = None,
    grace_s: float = GRACE_S,
    poll_s: float = 0.1,
    on_started: Callable[[subprocess.Popen], None] | None = None,
) -> RunResult:
    """Run ``heritage *args`` and follow it to the end.

    JSON lines on stdout become listener calls (other stdout lines are logged);
    stderr lines are logged. When ``listener.is_canceled()`` turns true the process
    gets SIGTERM (the backend stops cleanly after the current item), then SIGKILL after
    ``grace_s`` seconds; :class:`BackendCancelled` is raised. A non-zero exit raises
    :class:`BackendError` with the backend's reason.
    """
    listener = listener or NullListener()
    exe = exe or find_backend()
    command = [exe, *map(str, args)]
    listener.log("running: " + " ".join(command))
    kwargs: dict[str, Any] = {}
    if sys.platform == "win32":
        kwargs["creationflags"] = getattr(subprocess, "CREATE_NO_WINDOW", 0)
    try:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
            env=_env(),
            **kwargs,
        )
    except OSError as exc:
        raise BackendNotFoundError(f"cannot start {exe}: {exc}. {INSTALL_HINT}") from exc
    if on_started is not None:
        on_started(proc)
    lines: queue.Queue = queue.Queue()
    threads = [
        threading.Thread(target=_pump, args=(proc.stdout, lines, "out"), daemon=True),
        threading.Thread(target=_pump, args=(proc.stderr, lines, "err"), daemon=True),
    ]
    for t in threads:
        t.start()
    events: list[dict[str, Any]] = []
    stderr: deque[str] = deque(maxlen=200)
    open_streams = 2
    terminated_at: float | None = None
    killed = False
    clock = _StopClock()
    stopping_shown = 0.0
    stage_after_stop = False
    try:
        while open_streams or proc.poll() is None:
            now = time.monotonic()
            if terminated_at is None and listener.is_canceled():
                listener.log("cancel requested: stopping the backend (SIGTERM)")
                with contextlib.suppress(OSError):
                    proc.terminate()
                terminated_at = now
            elif terminated_at is not None and not stage_after_stop and now - stopping_shown >= 1:
                _status(listener, clock.text(now))
                stopping_shown = now
            if (
                terminated_at is not None
                and not killed
                and now - terminated_at > grace_s
                and proc.poll() is None
            ):
                listener.log(f"backend still running {grace_s:.0f} s after SIGTERM: killing it")
                with contextlib.suppress(OSError):
                    proc.kill()
                killed = True
            try:
                tag, line = lines.get(timeout=poll_s)
            except queue.Empty:
                continue
            if line is None:
                open_streams -= 1
                continue
            if tag == "err":
                stderr.append(line)
                if line.strip():
                    listener.log(line)
                continue
            ev = _parse(line)
            if ev is None:
                if line.strip():
                    listener.log(line)
                continue
            events.append(ev)
            clock.saw(ev, time.monotonic())
            if terminated_at is not None and ev.get("event") == "start":
                stage_after_stop = True
            _handle_event(ev, listener)
    finally:
        if proc.poll() is None:  # only on an exception in this loop
            proc.kill()
        returncode = proc.wait()
        for t in threads:
            t.join(timeout=1.0)
        for stream in (proc.stdout, proc.stderr):
            with contextlib.suppress(OSError):
                stream.close()
    result = RunResult(command, returncode, events, "\n".join(stderr))
    if terminated_at is not None:
        cancelled = BackendCancelled(
            "cancelled by the user; everything the backend wrote so far is kept",
            returncode,
            result.stderr,
        )
        cancelled.result = result
        raise cancelled
    if returncode != 0:
        raise BackendError(error_reason(list(stderr), returncode), returncode, result.stderr)
    return result


def _parse(line: str) -> dict[str, Any] | None:
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) and "event" in obj else None
