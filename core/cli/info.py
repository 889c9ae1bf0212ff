"""``heritage info``: the backend's version, Python and the model it will use.

What the QGIS plugin's Test button shows. Light: reads the model card (JSON) only,
never loads torch, so it answers in about a second.
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path
from typing import Any

import click

from heritage.cli.options import model_option


def backend_info(model_dir: Path | None = None) -> dict[str, Any]:
    """``{"version", "python", "executable", "commands", "model_dir", "model_id",
    "model_version", "model_ok", "model_problem"}`` of this installation.

    ``commands`` lists the sub-commands this backend can run (the plugin asks it here
    instead of probing each command's help).
    """
    from heritage import __version__
    from heritage.cli import available_commands
    from heritage.kernel.errors import ModelError
    from heritage.model.card import default_model_dir, read_card

    folder = Path(model_dir) if model_dir is not None else default_model_dir()
    info: dict[str, Any] = {
        "version": __version__,
        "python": platform.python_version(),
        "executable": sys.executable,
        "commands": available_commands(),
        "model_dir": str(folder),
        "model_id": None,
        "model_version": None,
        "model_ok": False,
        "model_problem": "",
    }
    try:
        card = read_card(folder)
    except ModelError as exc:
        info["model_problem"] = str(exc)
        return info
    info.update(model_id=card.model_id, model_version=card.version, model_ok=True)
    return info


@click.command("info")
@model_option(help="Model folder to check (default: the shipped model).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
def info(model_dir: Path | None, as_json: bool) -> None:
    """Print the backend's version and the model it will use (without loading it)."""
    data = backend_info(model_dir)
    if as_json:
        click.echo(json.dumps(data))
    else:
        click.echo(f"heritage {data['version']} (Python {data['python']}, {data['executable']})")
        if data["model_ok"]:
            click.echo(f"model {data['model_id']} {data['model_version']} in {data['model_dir']}")
        else:
            click.echo(f"no usable model: {data['model_problem']}")
    if not data["model_ok"]:
        sys.exit(1)
