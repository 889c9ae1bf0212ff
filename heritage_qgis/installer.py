"""Install the backend into a private Python environment, outside QGIS' Python.

What ML plugins for QGIS do to keep torch out of QGIS' interpreter: a virtual
environment in the user's QGIS profile folder (``<profile>/heritage/backend``), the
distribution ``heritage-defects`` and its pinned dependencies installed there with
pip (from PyPI, or offline from a local folder of wheels), then the path of its
``heritage`` command stored in the plugin settings. Standard library only (QGIS is
imported lazily for the profile folder), so it runs in a QgsTask and in plain tests.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .backend import EXE_NAME, NullListener, _env, backend_info

#: the backend's distribution on PyPI ("heritage" there is an unrelated package)
DISTRIBUTION = "heritage-defects"
#: the Python the backend's pinned dependencies are built for
PYTHON_VERSION = (3, 11)
#: "Collecting"/"Processing" lines pip prints for the backend and its dependencies
#: (about the number of packages of requirements.lock); only scales the progress bar
EXPECTED_PACKAGES = 60
_FETCH = re.compile(r"^\s*(Collecting|Processing|Looking in links|Obtaining)\b")


class InstallError(RuntimeError):
    """The installation failed; the message says why and what to do."""


@dataclass(frozen=True)
class InstallPlan:
    """Where and how to install: ``target`` folder of the environment, the ``python``
    that creates it (3.11), an optional ``wheelhouse`` folder (offline: pip never
    goes to the network), an exact ``version`` (None: the newest) and extra pip args."""

    target: Path
    python: str
    wheelhouse: Path | None = None
    version: str | None = None
    pip_args: tuple[str, ...] = field(default_factory=tuple)


def default_target() -> Path:
    """``<QGIS profile>/heritage/backend`` (``~/.heritage/backend`` outside QGIS)."""
    try:
        from qgis.core import QgsApplication
    except ImportError:
        return Path.home() / ".heritage" / "backend"
    return Path(QgsApplication.qgisSettingsDirPath()) / "heritage" / "backend"


def backend_exe(target: Path) -> Path:
    """The ``heritage`` command of an environment made by :func:`install`."""
    sub = "Scripts" if sys.platform == "win32" else "bin"
    return Path(target) / sub / EXE_NAME


def _env_python(target: Path) -> Path:
    sub = "Scripts" if sys.platform == "win32" else "bin"
    return Path(target) / sub / ("python.exe" if sys.platform == "win32" else "python")


def python_version(python: str) -> tuple[int, int] | None:
    """``(major, minor)`` of an interpreter, None when it does not run."""
    try:
        done = subprocess.run(
            [python, "-c", "import sys; print(sys.version_info[0], sys.version_info[1])"],
            capture_output=True, text=True, timeout=30, env=_env(), check=False,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    parts = done.stdout.split()
    return (int(parts[0]), int(parts[1])) if done.returncode == 0 and len(parts) == 2 else None


def find_python() -> str | None:
    """A Python 3.11 interpreter on this machine (``python3.11``, ``python3``, ``py``)."""
    for name in ("python3.11", "python3", "python"):
        path = shutil.which(name)
        if path and python_version(path) == PYTHON_VERSION:
            return path
    return None


def pip_command(plan: InstallPlan) -> list[str]:
    """The pip command that installs the backend into the environment."""
    spec = f"{DISTRIBUTION}=={plan.version}" if plan.version else DISTRIBUTION
    cmd = [str(_env_python(plan.target)), "-m", "pip", "install", "--disable-pip-version-check",
           "--progress-bar", "off"]  # fmt: skip
    if plan.wheelhouse is not None:
        cmd += ["--no-index", "--find-links", str(plan.wheelhouse)]
    return [*cmd, *plan.pip_args, spec]


def _run(
    cmd: Sequence[str], listener, on_line: Callable[[str], None] | None = None
) -> tuple[int, list[str]]:
    """Run ``cmd``, logging its output; terminated when the listener cancels."""
    listener.log("running: " + " ".join(cmd))
    proc = subprocess.Popen(
        list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        encoding="utf-8", errors="replace", env=_env(), stdin=subprocess.DEVNULL,
    )  # fmt: skip
    lines: list[str] = []
    assert proc.stdout is not None
    for raw in proc.stdout:
        line = raw.rstrip()
        lines.append(line)
        if line:
            listener.log(line)
        if on_line is not None:
            on_line(line)
        if listener.is_canceled():
            proc.terminate()
            break
    code = proc.wait()
    if listener.is_canceled():
        raise InstallError("the installation was canceled; run it again to finish")
    return code, lines


def _reason(lines: list[str]) -> str:
    errors = [ln for ln in lines if ln.startswith("ERROR:")]
    return (errors or [ln for ln in lines if ln.strip()][-2:] or ["no output"])[-1]


def check_backend(exe: str | Path) -> dict:
    """``heritage info --json`` of ``exe``: its version and the model it will use.
    Raises :class:`InstallError` with the reason when it does not answer."""
    info, why = backend_info(exe)
    if info is not None:
        return info
    if why.startswith("cannot run"):
        raise InstallError(why)
    raise InstallError(
        f"{exe} does not answer `heritage info` ({why}); it may be another program or "
        "an older backend: install the backend again"
    )


def install(
    plan: InstallPlan,
    listener=None,
    before_pip: Callable[[Path], None] | None = None,
) -> Path:
    """Create the environment, install the backend with pip, check it; returns the
    ``heritage`` executable. ``listener`` (the backend runner's protocol: stage,
    progress, log, is_canceled) follows it; ``before_pip`` gets the environment folder
    (tests use it). Raises :class:`InstallError`."""
    listener = listener or NullListener()
    version = python_version(plan.python)
    if version != PYTHON_VERSION:
        found = "does not run" if version is None else f"is Python {version[0]}.{version[1]}"
        raise InstallError(
            f"{plan.python} {found}; the backend needs Python 3.11: install it "
            "(python.org, or your system's python3.11 package) and choose it here"
        )
    if plan.wheelhouse is not None and not Path(plan.wheelhouse).is_dir():
        raise InstallError(f"wheel folder {plan.wheelhouse} does not exist")
    target = Path(plan.target)
    listener.stage(f"Creating the Python environment in {target}")
    listener.progress(2.0)
    if not _env_python(target).exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        code, lines = _run([plan.python, "-m", "venv", str(target)], listener)
        if code != 0:
            raise InstallError(f"cannot create the environment in {target}: {_reason(lines)}")
    listener.progress(10.0)
    if before_pip is not None:
        before_pip(target)
    where = f"from {plan.wheelhouse}" if plan.wheelhouse is not None else "from PyPI"
    listener.stage(f"Installing {DISTRIBUTION} and its dependencies {where}")
    fetched = 0

    def on_line(line: str) -> None:
        nonlocal fetched
        if _FETCH.match(line):
            fetched += 1
            listener.progress(10.0 + 75.0 * min(1.0, fetched / EXPECTED_PACKAGES))
        elif line.startswith("Installing collected packages"):
            listener.stage("Installing the downloaded packages")
            listener.progress(88.0)

    code, lines = _run(pip_command(plan), listener, on_line)
    if code != 0:
        hint = (
            " (is every wheel the backend needs in that folder?)"
            if plan.wheelhouse is not None
            else " (is the network reachable, and is heritage-defects published on your "
            "package index? otherwise install from a folder of wheels: `make wheelhouse`)"
        )
        raise InstallError(f"pip could not install {DISTRIBUTION}: {_reason(lines)}{hint}")
    listener.stage("Checking the backend")
    listener.progress(95.0)
    exe = backend_exe(target)
    info = check_backend(exe)
    if not info.get("model_ok"):
        raise InstallError(f"the backend is installed but its model is not usable: "
                           f"{info.get('model_problem')}")  # fmt: skip
    listener.progress(100.0)
    return exe


def describe(info: dict) -> str:
    """One line for the Test button: version, Python and model."""
    text = f"heritage {info.get('version')} (Python {info.get('python')})"
    if info.get("model_ok"):
        return (
            text
            + f"; model {info.get('model_id')} {info.get('model_version')} in "
            + str(info.get("model_dir"))
        )
    return text + f"; no usable model: {info.get('model_problem')}"
