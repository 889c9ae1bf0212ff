"""Two-stage training end to end (``heritage train`` and ``train_two_stage`` on small
generated image folders): resume, cancel, a SIGTERM mid-epoch, oversampling, fp16
weights, a reused stage 1, painted cracks."""

from __future__ import annotations

import json
import os
import signal
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from factories import image_folder
from helpers import StopAt, csv_rows

from heritage.kernel.errors import CancelledError
from heritage.kernel.interrupts import EXIT_CANCELLED
from heritage.kernel.progress import TqdmProgress
from heritage.training.train import TrainConfig, train_two_stage


@pytest.fixture
def tiny_data(tmp_path) -> tuple[Path, Path]:
    return image_folder(tmp_path, "dsA", groups=True), image_folder(tmp_path, "dsB", seed=1)


def test_cli_train_end_to_end_then_resume(tiny_data, tmp_path):
    from heritage.cli import cli
    from heritage.model.card import load_model
    from heritage.model.predict import TwoStageClassifier

    a, b = tiny_data
    model_dir, run = tmp_path / "model", tmp_path / "run"
    args = ["train", str(a), str(b), "-o", str(model_dir), "--run-dir", str(run),
            "--image-size", "64", "--epochs", "1", "--stage2-epochs", "1", "--batch-size", "8",
            "--stage2-batch-size", "8", "--workers", "0", "--device", "cpu",
            "--precision", "bf16"]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    loaded = load_model(model_dir)
    card = loaded.card
    assert card.stage1.labels == ("crack", "no_crack") and card.positive_labels == ("crack",)
    assert card.stage1.arch == "mobilenet_v3_small" and card.stage2.arch == "resnet18"
    assert card.decision_stage in ("stage1", "stage2") and card.input_size == 64
    assert card.cam_target == "positive" and "cam_target" not in card.training
    assert sum(card.training["counts_per_split"].values()) == 48
    # no machine paths: data sets by name and content fingerprint, torch without build tag
    assert str(tmp_path) not in (model_dir / "model.json").read_text(encoding="utf-8")
    from heritage.training.data import dataset_fingerprint, load_split, split_fingerprint

    split = load_split(run)
    sets = {d["name"]: d for d in card.training["datasets"]}
    assert set(sets) == {"dsA", "dsB"} and sum(d["images"] for d in sets.values()) == 48
    assert sets["dsA"]["fingerprint"] == dataset_fingerprint(
        [it for it in split if it.dataset == "dsA"]
    )
    assert card.training["split"]["fingerprint"] == split_fingerprint(split)
    assert "+" not in card.training["torch"] and "run_dir" not in card.training
    assert set(card.metrics["test"]) == {"dsA", "dsB", "all"}
    assert {"stage1", "stage2", "mcnemar"} <= set(card.metrics["test"]["all"])
    for name in ("config.json", "split.csv", "stage1_metrics.csv", "stage2_metrics.csv",
                 "stage1_curves.png", "stage2_curves.png", "confusion_stage1.png",
                 "confusion_stage2.png", "metrics.json"):  # fmt: skip
        assert (run / name).is_file(), name
    assert json.loads((run / "config.json").read_text())["image_size"] == 64
    assert json.loads((run / "config.json").read_text())["precision"] == "bf16"
    for stage in ("stage1", "stage2"):
        ck = torch.load(run / f"{stage}_checkpoint.pt", weights_only=True)
        assert ck["config"]["precision"] == "bf16", stage
    overlays = sorted((run / "cam_overlays").rglob("*.png"))
    assert len(overlays) == 48
    # the written model is usable by inference
    from PIL import Image

    res = TwoStageClassifier(loaded).classify(
        [Image.open(next(a.glob("crack/*.png"))).convert("RGB")]
    )
    assert 0.0 <= res[0].p_final <= 1.0
    # resuming a finished run re-uses split, checkpoints and overlays
    stamp = overlays[0].stat().st_mtime_ns
    result = CliRunner().invoke(cli, [*args, "--resume"])
    assert result.exit_code == 0, result.output
    assert overlays[0].stat().st_mtime_ns == stamp
    assert len(csv_rows(run / "stage1_metrics.csv")) == 1
    assert load_model(model_dir).card.cam_layer == "features.12"
    # another CAM layer: stage 1 is kept, the overlays and stage 2 are made again
    result = CliRunner().invoke(cli, [*args, "--resume", "--cam-layer", "features.9"])
    assert result.exit_code == 0, result.output
    card = load_model(model_dir).card
    assert card.cam_layer == "features.9"
    assert (run / "cam_overlays" / "stage1_digest.txt").read_text().strip().endswith("features.9")
    assert overlays[0].stat().st_mtime_ns != stamp
    assert card.training["overlays"]["replaced"] == 1
    assert card.training["stage2_fit"]["resumed_from"] is None  # not the stale checkpoint
    assert tuple(card.training["stage1_fit"]["resumed_from"] or ()) != ()  # stage 1 reused


def test_two_stage_cancelled_then_resumed_stage1_only(tiny_data, tmp_path):
    from heritage.model.card import load_model

    a, b = tiny_data
    cfg = TrainConfig.from_flat(
        data_dirs=(str(a), str(b)), model_dir=str(tmp_path / "m"), run_dir=str(tmp_path / "r"),
        image_size=48, epochs=2, batch_size=8, workers=0, device="cpu", skip_stage2=True,
    )  # fmt: skip
    with pytest.raises(CancelledError):
        train_two_stage(cfg, StopAt(6))  # stops in epoch 2
    n_train = sum(r["split"] == "train" for r in csv_rows(tmp_path / "r" / "split.csv"))
    per_epoch = -(-n_train // 8)
    ck = torch.load(tmp_path / "r" / "stage1_checkpoint.pt", weights_only=True)
    assert (ck["epoch"], ck["batch"]) == (1, 6 - per_epoch)
    assert not (tmp_path / "m" / "model.json").exists()
    card = train_two_stage(TrainConfig.from_flat(**{**cfg.flat(), "resume": True}))
    assert card.stage2 is None and card.decision_stage == "stage1"
    assert tuple(card.training["stage1_fit"]["resumed_from"]) == (1, 6 - per_epoch)
    assert len(card.training["stage1_fit"]) and card.training["stage1_fit"]["epochs_run"] == 2
    assert load_model(tmp_path / "m").stage2 is None


def test_oversampled_training_records_unique_and_shown_counts(tiny_data, tmp_path):
    a, b = tiny_data
    cfg = TrainConfig.from_flat(
        data_dirs=(str(a), str(b)), model_dir=str(tmp_path / "m"), run_dir=str(tmp_path / "r"),
        image_size=32, epochs=1, batch_size=8, workers=0, device="cpu", skip_stage2=True,
        oversample={"dsA": 3},
    )  # fmt: skip
    card = train_two_stage(cfg)
    train_rows = [r for r in csv_rows(tmp_path / "r" / "split.csv") if r["split"] == "train"]
    n_a = sum(r["dataset"] == "dsA" for r in train_rows)
    assert n_a > 0
    assert card.training["counts_per_split"]["train"] == len(train_rows)
    assert card.training["train_images_per_epoch"] == len(train_rows) + 2 * n_a


def test_fp16_weights_compute_what_the_metrics_were_measured_on(tiny_data, tmp_path):
    from safetensors import safe_open

    from heritage.model.card import load_model, round_to_fp16
    from heritage.model.zoo import build_model

    torch.manual_seed(0)
    net = build_model("mobilenet_v3_small", 2).eval()
    x = torch.randn(2, 3, 48, 48)
    with torch.inference_mode():
        before = net(x)
        after = round_to_fp16(net)(x)
    assert not torch.equal(before, after) and torch.allclose(before, after, atol=1e-2)
    assert all(p.dtype == torch.float32 for p in net.parameters())

    a, b = tiny_data
    cfg = TrainConfig.from_flat(
        data_dirs=(str(a), str(b)), model_dir=str(tmp_path / "m"), run_dir=str(tmp_path / "r"),
        image_size=48, epochs=1, batch_size=8, workers=0, device="cpu", skip_stage2=True,
        fp16=True,
    )  # fmt: skip
    card = train_two_stage(cfg)
    with safe_open(str(tmp_path / "m" / "stage1.safetensors"), "pt") as f:
        dtypes = {f.get_tensor(k).dtype for k in f.keys()}  # noqa: SIM118 (no __iter__)
    assert torch.float16 in dtypes and torch.float32 not in dtypes
    # the loaded float16 file gives exactly the rounded network's test probabilities
    loaded = load_model(tmp_path / "m")
    rounded = round_to_fp16(loaded.stage1)  # already fp16-exact: rounding changes nothing
    ref = {k: v.clone() for k, v in loaded.stage1.state_dict().items()}
    assert all(torch.equal(rounded.state_dict()[k], v) for k, v in ref.items())
    assert card.metrics["test"]["all"]["stage1"]["n"] > 0


def test_a_finished_stage1_is_used_as_trained_on_its_own_split(tiny_data, tmp_path):
    """--stage1-weights: stage 1 from elsewhere (e.g. a compare row), only stage 2 trained."""
    import shutil

    from heritage.cli import cli
    from heritage.kernel.errors import DataError, ModelError
    from heritage.model.card import load_model
    from heritage.training.data import sha256_file

    a, b = tiny_data
    base = dict(data_dirs=(str(a), str(b)), image_size=48, epochs=1, batch_size=8, workers=0,
                device="cpu", stage2_epochs=1, stage2_batch_size=8)  # fmt: skip
    cfg1 = TrainConfig.from_flat(**base, model_dir=str(tmp_path / "m1"),
                                 run_dir=str(tmp_path / "r1"), skip_stage2=True)  # fmt: skip
    first = train_two_stage(cfg1)
    # laid out like a row of heritage compare: OUT/split.csv, OUT/<arch>/model.safetensors
    row = tmp_path / "cmp" / "mobilenet_v3_small"
    row.mkdir(parents=True)
    weights = row / "model.safetensors"
    shutil.copy2(tmp_path / "m1" / "stage1.safetensors", weights)
    for name in ("split.csv", "split_meta.json"):
        shutil.copy2(tmp_path / "r1" / name, tmp_path / "cmp" / name)
    (row / "result.json").write_text(json.dumps({"arch": "mobilenet_v3_small", "best_epoch": 1,
                                                 "test": {"accuracy": 0.5}}))  # fmt: skip
    (tmp_path / "cmp" / "results.json").write_text(json.dumps({"command_line": "heritage compare"}))
    run2 = tmp_path / "r2"
    run2.mkdir()
    for name in ("split.csv", "split_meta.json"):
        shutil.copy2(tmp_path / "r1" / name, run2 / name)
    cfg = TrainConfig.from_flat(**base, model_dir=str(tmp_path / "m2"), run_dir=str(run2),
                                stage1_weights=str(weights))  # fmt: skip
    card = train_two_stage(cfg)
    assert not (run2 / "stage1_checkpoint.pt").exists()  # not trained again
    assert card.training["stage1_fit"]["sha256"] == sha256_file(weights)
    # the card names no folder of this machine: the checked split by its file name
    assert card.training["stage1_fit"]["split_checked"] == "split.csv"
    assert card.training["stage1_fit"]["compare_row"] == {"arch": "mobilenet_v3_small",
                                                          "best_epoch": 1}  # fmt: skip
    assert card.training["stage1_fit"]["compare_command_line"] == "heritage compare"
    assert card.metrics["stage1_best_epoch"] is None and card.stage2 is not None
    # the same network on the same test split: the same stage-1 test metrics
    assert card.metrics["test"]["all"]["stage1"] == first.metrics["test"]["all"]["stage1"]
    s1, s2 = load_model(tmp_path / "m1").stage1, load_model(tmp_path / "m2").stage1
    assert all(torch.equal(v, s2.state_dict()[k]) for k, v in s1.state_dict().items())

    # a stage 1 trained on another split would be scored on images it saw
    rows = (tmp_path / "cmp" / "split.csv").read_text().splitlines()
    (tmp_path / "cmp" / "split.csv").write_text("\n".join([rows[0], *rows[:0:-1]]) + "\n")
    with pytest.raises(DataError, match="differs"):
        train_two_stage(TrainConfig.from_flat(**{**cfg.flat(), "model_dir": str(tmp_path / "m3")}))
    shutil.copy2(run2 / "split.csv", tmp_path / "cmp" / "split.csv")
    # weights of another network, or asked to be trained further
    with pytest.raises(ModelError, match="not a resnet18"):
        train_two_stage(TrainConfig.from_flat(**{**cfg.flat(), "arch": "resnet18"}))
    (row / "cut.safetensors").write_bytes(weights.read_bytes()[:1000])  # truncated copy
    with pytest.raises(ModelError, match="cannot read weights") as cut:
        cut_cfg = {**cfg.flat(), "stage1_weights": str(row / "cut.safetensors")}
        train_two_stage(TrainConfig.from_flat(**cut_cfg))
    assert "is not a" not in str(cut.value)  # unreadable, not "another network"
    r = CliRunner().invoke(
        cli, ["train", str(a), str(b), "-o", str(tmp_path / "m4"), "--run-dir", str(run2),
              "--stage1-weights", str(weights), "--freeze", "2", "--image-size", "48",
              "--notes", "n"],
    )  # fmt: skip
    assert r.exit_code != 0 and "not trained again" in str(r.exception)
    assert not (tmp_path / "m4").exists()


def test_painted_cracks_use_training_masks_only_and_need_a_mask_folder(tiny_data, tmp_path, caplog):
    import logging

    from PIL import Image

    from heritage.kernel.errors import DataError
    from heritage.training.crackpaint import CrackPaintingDataset
    from heritage.training.data import load_split
    from heritage.training.train import painting_dataset

    a, b = tiny_data
    masks = tmp_path / "masks"
    cfg = TrainConfig.from_flat(
        data_dirs=(str(a), str(b)), model_dir=str(tmp_path / "m"), run_dir=str(tmp_path / "r"),
        image_size=32, epochs=1, batch_size=8, workers=0, device="cpu", skip_stage2=True,
        paint_cracks=0.5, paint_masks=str(masks),
    )  # fmt: skip
    # a crack mask for every file name (dsA and dsB use the same names)
    masks.mkdir()
    for cls in ("crack", "no_crack"):
        for i in range(12):
            m = np.zeros((40, 40), bool)
            m[5 + i, :20] = True
            Image.fromarray(m.astype(np.uint8) * 255).save(masks / f"{cls}_{i:02d}.png")
    with caplog.at_level(logging.INFO, logger="heritage.training.train"):
        card = train_two_stage(cfg)
    assert card.training["config"]["paint_cracks"] == 0.5
    items = load_split(tmp_path / "r")
    by_split = {s: [it for it in items if it.split == s] for s in ("train", "val", "test")}
    held_out = {it.path.name for s in ("val", "test") for it in by_split[s]}
    allowed = {it.path.name for it in by_split["train"]} - held_out
    assert held_out and allowed  # both kinds exist in this split
    assert f"painting cracks from {len(allowed)} training masks" in caplog.text
    ds = painting_dataset(cfg, _Labels(), by_split, ["crack", "no_crack"], [0])
    assert isinstance(ds, CrackPaintingDataset)
    assert len(ds.masks) == len(allowed) and ds.negative == {1} and ds.crack_label == 0
    with pytest.raises(DataError, match="--paint-masks"):
        no_masks = replace(cfg, data=replace(cfg.data, paint_masks=None))
        painting_dataset(no_masks, _Labels(), by_split, ["crack"], [0])
    with pytest.raises(DataError, match="not among the classes"):
        painting_dataset(cfg, _Labels(), by_split, ["defect", "none"], [0])


class _Labels:
    labels: tuple[int, ...] = ()


def test_sigterm_during_cli_training_checkpoints_then_resume_finishes(tmp_path, monkeypatch):
    """A SIGTERM in the middle of stage 1 stops `heritage train` with exit 130, leaving a
    mid-epoch checkpoint; `--resume` continues from that batch instead of starting over."""
    from heritage.cli import cli
    from heritage.model.card import load_model

    a = image_folder(tmp_path, "dsA", groups=True)
    b = image_folder(tmp_path, "dsB", seed=1)
    model_dir, run = tmp_path / "model", tmp_path / "run"
    args = ["train", str(a), str(b), "-o", str(model_dir), "--run-dir", str(run),
            "--image-size", "48", "--epochs", "2", "--batch-size", "4", "--skip-stage2",
            "--checkpoint-every", "0", "--workers", "0", "--device", "cpu"]  # fmt: skip
    state = {"stage": "", "batches": 0}
    start, step = TqdmProgress.start, TqdmProgress.step

    def spy_start(self, stage, total=None):
        state["stage"] = stage
        start(self, stage, total)

    def killing_step(self, n=1, **info):
        step(self, n, **info)
        if state["stage"] == "stage1 epoch 1/2" and n == 1:
            state["batches"] += 1
            if state["batches"] == 3:  # as if the user pressed Ctrl-C here
                os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(TqdmProgress, "start", spy_start)
    monkeypatch.setattr(TqdmProgress, "step", killing_step)
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == EXIT_CANCELLED, result.output
    assert "--resume" in result.output and str(run) in result.output
    ck = torch.load(run / "stage1_checkpoint.pt", weights_only=True)
    assert (ck["epoch"], ck["batch"]) == (0, 3)  # written on the way out, not at an epoch end
    assert not (model_dir / "model.json").exists()

    monkeypatch.setattr(TqdmProgress, "step", step)
    result = CliRunner().invoke(cli, [*args, "--resume"])
    assert result.exit_code == 0, result.output
    fit_info = load_model(model_dir).card.training["stage1_fit"]
    assert tuple(fit_info["resumed_from"]) == (0, 3) and fit_info["epochs_run"] == 2
