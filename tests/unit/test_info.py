"""`heritage info`: what the plugin's Test button shows, without loading the model."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from heritage.cli import cli


def test_info_names_the_version_and_the_shipped_model() -> None:
    result = CliRunner().invoke(cli, ["info", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["version"] == "0.1.0" and info["python"].startswith("3.11")
    assert info["model_ok"] and info["model_id"] == "heritage-default"
    assert (Path(info["model_dir"]) / "model.json").is_file()
    assert {"classify", "group", "review", "info"} <= set(info["commands"])  # for the plugin
    text = CliRunner().invoke(cli, ["info"]).output
    assert text.startswith("heritage 0.1.0 (Python 3.11") and "model heritage-default" in text


def test_info_fails_with_the_reason_for_a_folder_without_a_model(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["info", "--model", str(tmp_path)])
    assert result.exit_code == 1
    assert "no usable model" in result.output and "model.json" in result.output
