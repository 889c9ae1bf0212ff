"""heritage train's options grouped into TrainConfig and recorded flat (no training)."""

from __future__ import annotations

from pathlib import Path

import pytest

from heritage.training.train import TrainConfig


def test_train_config_groups_the_flat_options_and_records_them_flat(tmp_path):
    from heritage.cli.train import train, train_config
    from heritage.training.train import FLAT_NAMES

    cfg = TrainConfig.from_flat(data_dirs=("a",), model_dir="m", arch="resnet18", stage2_lr=1e-3,
                                cam_target="predicted", seed=3, stage1_weights="w")  # fmt: skip
    assert (cfg.stage1.arch, cfg.stage1.weights, cfg.stage2.lr) == ("resnet18", "w", 1e-3)
    assert cfg.cam.target == "predicted" and cfg.run.seed == 3 and cfg.stage2.epochs == 10
    assert cfg.resolved_run_dir == Path("m-run")
    flat = cfg.flat()
    assert list(flat) == list(FLAT_NAMES) and TrainConfig.from_flat(**flat) == cfg
    with pytest.raises(TypeError, match="unknown training setting"):
        TrainConfig.from_flat(epoch=3)
    # every option of `heritage train` lands in the config (the CLI builds it in one place)
    ctx = train.make_context("train", [str(tmp_path), "-o", str(tmp_path / "m")])
    options = {k: v for k, v in ctx.params.items() if k not in ("threads", "json_progress")}
    built = train_config(options)
    assert built.stage1.arch == "mobilenet_v3_small" and built.run.workers >= 1
    assert built.flat()["version"] == "0.1.0" and built.data.positive == ("crack", "salt_damage")
