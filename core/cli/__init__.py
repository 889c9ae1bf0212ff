"""The ``heritage`` command line.

Thin by design: each sub-command lives in its own module of this package and is
imported only when it runs, so ``heritage --help`` never loads torch or geopandas.
Logging is configured here and nowhere else.
"""

from __future__ import annotations

import importlib
import logging
import sys

import click

from heritage import __version__

#: command name -> "module:attribute" (module relative to this package)
COMMANDS: dict[str, tuple[str, str]] = {
    "photos": ("photos:photos", "Import geotagged photos into a GeoPackage point layer."),
    "train": ("train:train", "Train the two-stage classifier on image folders."),
    "finetune": (
        "finetune:finetune",
        "Fine-tune the model with the reviews of surveys (before/after report).",
    ),
    "evaluate": ("evaluate:evaluate", "Evaluate a model on labelled image folders."),
    "prune": ("prune:prune", "Prune the stage-1 model and fine-tune it."),
    "classify": ("classify:classify", "Classify a photo survey into a GeoPackage."),
    "group": ("group:group", "Re-group a classified survey per building (in place)."),
    "route": ("route:route", "Re-plan the inspection route of a classified survey."),
    "review": ("review:review", "Record a reviewer's verdict on a photo of a survey."),
    "reviews": (
        "review:reviews",
        "List, or export as an image folder, the reviews of a survey.",
    ),
    "report": (
        "report:report",
        "Write the inspection report of a survey (HTML, PDF, CSV).",
    ),
    "classify-raster": (
        "raster:classify_raster",
        "Classify a georeferenced raster tile by tile.",
    ),
    "info": ("info:info", "Show the version and the model the backend will use."),
}


class LazyGroup(click.Group):
    """A click group that imports a sub-command's module only when it is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        target, _ = COMMANDS[cmd_name]
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(f"{__package__}.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"{__package__}.{module_name}":
                return _unavailable(cmd_name)
            raise
        return getattr(module, attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """List commands from the table above without importing them."""
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def available_commands() -> list[str]:
    """The sub-commands this installation can run (their module is present), sorted.

    Found without importing them (``importlib.util.find_spec``), so it stays fast; what
    ``heritage info --json`` reports to the QGIS plugin as ``commands``.
    """
    from importlib.util import find_spec

    return [
        name
        for name in sorted(COMMANDS)
        if find_spec(f"{__package__}.{COMMANDS[name][0].split(':')[0]}") is not None
    ]


def _unavailable(name: str) -> click.Command:
    @click.command(name=name, help=COMMANDS[name][1] + " (not available in this version)")
    def _cmd() -> None:
        raise click.ClickException(f"'heritage {name}' is not available in this version yet.")

    return _cmd


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="heritage")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
def cli(verbose: int, quiet: bool) -> None:
    """heritage: defects on heritage buildings, from survey photos to a prioritised map."""
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    logging.basicConfig(
        level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )


def main(command: click.Command | None = None) -> None:
    """Console-script entry point: HeritageError becomes a one-line message, exit 1.

    ``command`` (default: the ``heritage`` group) is run with the same contract."""
    from heritage.kernel.errors import HeritageError

    try:
        (command or cli).main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(1)  # the README's contract: 1 for any usage or input error (click says 2)
    except HeritageError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("Interrupted: everything written so far is kept.", err=True)
        sys.exit(130)
