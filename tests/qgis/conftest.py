"""Fixtures of the QGIS tests: a tiny model the real backend can run quickly."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random two-stage model at input size 64 that flags every photo (threshold 0)."""
    import torch

    from heritage.modelcard import ModelCard, StageCard, save_model
    from heritage.modelzoo import build_model

    torch.manual_seed(0)
    card = ModelCard(
        model_id="tiny-plugin",
        version="0.0.1",
        input_size=64,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        positive_labels=("crack",),
        stage1=StageCard("mobilenet_v3_small", "", "", 3, ("crack", "no_crack", "salt")),
        stage2=StageCard("mobilenet_v3_small", "", "", 1, ("conservation_needed",)),
        cam_layer="features.12",
        cam_method="gradcam",
        threshold=0.0,
        decision_stage="stage2",
    )
    path = tmp_path_factory.mktemp("plugin_model") / "tiny"
    save_model(
        path, card, build_model("mobilenet_v3_small", 3), build_model("mobilenet_v3_small", 1)
    )
    return path


@pytest.fixture(scope="session")
def backend_exe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A `heritage` executable running the core this test session imports (the
    plugin strips PYTHONPATH from the backend's environment, so the wrapper sets it)."""
    import os
    import sys

    exe = tmp_path_factory.mktemp("backend") / "heritage"
    pythonpath = os.environ.get("PYTHONPATH", "")
    exe.write_text(
        "#!/bin/sh\n"
        + (f"PYTHONPATH='{pythonpath}' export PYTHONPATH\n" if pythonpath else "")
        + f"exec '{sys.executable}' -c 'from heritage.cli import main; main()' \"$@\"\n"
    )
    exe.chmod(0o755)
    return exe
