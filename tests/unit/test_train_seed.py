"""``heritage train --seed`` makes a run reproducible: the networks are initialised after
the seed is set, so the same seed gives the same weights (also from random init)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from factories import image_folder

from heritage.training.train import TrainConfig, train_two_stage


def _weights(data: Path, out: Path, seed: int) -> dict[str, torch.Tensor]:
    """The stage-1 and stage-2 weights of a one-epoch run from random init."""
    from heritage.model.card import load_model

    cfg = TrainConfig.from_flat(
        data_dirs=(str(data),), model_dir=str(out / "m"), run_dir=str(out / "r"), seed=seed,
        image_size=32, epochs=1, stage2_epochs=1, batch_size=8, stage2_batch_size=8,
        workers=0, device="cpu", arch="mobilenet_v3_small", stage2_arch="resnet18",
    )  # fmt: skip
    train_two_stage(cfg)
    loaded = load_model(out / "m")
    return {
        **{f"stage1.{k}": v for k, v in loaded.stage1.state_dict().items()},
        **{f"stage2.{k}": v for k, v in loaded.stage2.state_dict().items()},
    }


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], stage: str) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a if k.startswith(stage))


@pytest.mark.slow  # three one-epoch trainings of both stages: about 7 s
def test_the_same_seed_gives_the_same_weights_another_seed_others(tmp_path):
    data = image_folder(tmp_path, "ds")
    first = _weights(data, tmp_path / "a", seed=0)
    torch.manual_seed(1234)  # whatever ran before must not matter
    torch.rand(7)
    again = _weights(data, tmp_path / "b", seed=0)
    other = _weights(data, tmp_path / "c", seed=1)
    assert first.keys() == again.keys() == other.keys()
    for stage in ("stage1.", "stage2."):
        assert _same(first, again, stage), f"{stage} differs between two runs with seed 0"
        assert not _same(first, other, stage), f"{stage} is the same with seeds 0 and 1"
