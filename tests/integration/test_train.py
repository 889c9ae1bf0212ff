"""The fit loop (resume, early stopping) and two-stage training end to end."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from factories import image_folder
from torch.utils.data import TensorDataset

from heritage.kernel.errors import CancelledError
from heritage.kernel.progress import NullProgress
from heritage.training.data import make_loader
from heritage.training.fit import FitConfig, ResumableSampler, evaluate_loss, fit, predict_proba
from heritage.training.train import TrainConfig, binary_metrics, mcnemar, train_two_stage


def _rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(path.read_text().splitlines()))


class StopAt(NullProgress):
    """Raises ``exc`` at the ``at``-th single-batch step (a stand-in for Ctrl-C or a kill)."""

    def __init__(self, at: int, exc: type[BaseException] = CancelledError) -> None:
        super().__init__()
        self.at, self.exc, self.count = at, exc, 0

    def step(self, n: int = 1, **info) -> None:
        if n == 1 and not info.get("resumed"):
            self.count += 1
            if self.count == self.at:
                raise self.exc("stop here")


def _toy(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(40, 8, generator=g)
    y = (x[:, 0] > 0).long()
    train = make_loader(TensorDataset(x, y), 4, shuffle=True, seed=seed)  # 10 batches
    val = make_loader(TensorDataset(x[:12], y[:12]), 6, shuffle=False)
    torch.manual_seed(seed)
    return torch.nn.Linear(8, 2), train, val


CFG = FitConfig(epochs=3, lr=0.05, patience=0, device="cpu", checkpoint_every=0)


def test_fit_writes_metrics_and_restores_best(tmp_path):
    model, train, val = _toy()
    res = fit(model, train, val, CFG, tmp_path, "toy")
    assert isinstance(train.sampler, ResumableSampler)
    rows = _rows(tmp_path / "toy_metrics.csv")
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    assert set(rows[0]) == {
        "epoch",
        "train_loss",
        "train_acc",
        "val_loss",
        "val_acc",
        "lr",
        "seconds",
    }
    assert res.epochs_run == 3
    assert res.best_val_loss == pytest.approx(min(float(r["val_loss"]) for r in rows), abs=1e-5)
    assert evaluate_loss(model, val, torch.device("cpu"))[0] == pytest.approx(res.best_val_loss)
    probs, labels = predict_proba(model, val, "cpu")
    assert probs.shape == (12, 2) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert labels.tolist() == val.dataset.tensors[1].tolist()


def test_fit_early_stopping_on_val_loss(tmp_path):
    model, train, val = _toy()
    cfg = FitConfig(epochs=10, lr=0.0, patience=2, device="cpu", checkpoint_every=0)
    res = fit(model, train, val, cfg, tmp_path, "flat")  # lr 0: val loss never improves
    assert res.stopped_early and res.epochs_run == 3 and res.best_epoch == 1


@pytest.mark.parametrize(
    ("exc", "every", "expect"),
    [
        (CancelledError, 0, (1, 3)),  # cancel: checkpoint written right where it stopped
        (KeyboardInterrupt, 2, (1, 2)),  # hard stop: the last periodic checkpoint
    ],
)
def test_fit_resumes_at_saved_epoch_and_batch_with_identical_result(tmp_path, exc, every, expect):
    ref_model, train, val = _toy()
    fit(ref_model, train, val, CFG, tmp_path / "ref", "toy")

    model, train, val = _toy()
    cfg = FitConfig(epochs=3, lr=0.05, patience=0, device="cpu", checkpoint_every=every)
    with pytest.raises(exc):
        fit(model, train, val, cfg, tmp_path / "run", "toy", StopAt(13, exc))  # epoch 2, batch 3
    ck = torch.load(tmp_path / "run" / "toy_checkpoint.pt", weights_only=True)
    assert (ck["epoch"], ck["batch"]) == expect
    assert len(ck["history"]) == 1

    model, train, val = _toy(seed=0)
    torch.nn.init.zeros_(model.weight)  # whatever the fresh model holds is replaced
    res = fit(
        model, train, val, FitConfig(**{**CFG.__dict__, "resume": True}), tmp_path / "run", "toy"
    )
    assert res.resumed_from == expect
    assert res.epochs_run == 3
    for a, b in zip(model.state_dict().values(), ref_model.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    # a finished run resumes as a no-op
    again = fit(
        model, train, val, FitConfig(**{**CFG.__dict__, "resume": True}), tmp_path / "run", "toy"
    )
    assert again.epochs_run == 3 and again.resumed_from == (3, 0)


def test_fit_refuses_to_resume_with_another_schedule(tmp_path):
    from heritage.kernel.errors import ModelError

    model, train, val = _toy()
    with pytest.raises(CancelledError):
        fit(model, train, val, CFG, tmp_path, "toy", StopAt(4))
    ck = tmp_path / "toy_checkpoint.pt"
    stamp = ck.stat().st_mtime_ns
    for change, said in (
        ({"lr": 0.01}, "lr 0.05 -> 0.01"),
        ({"scheduler": "cosine"}, "plateau"),
        ({"precision": "bf16"}, "precision 'fp32' -> 'bf16'"),
    ):
        cfg = FitConfig(**{**CFG.__dict__, "resume": True, **change})
        with pytest.raises(ModelError, match="other training settings") as err:
            fit(*_toy(), cfg, tmp_path, "toy")
        assert said in str(err.value) and str(ck) in str(err.value)
    assert ck.stat().st_mtime_ns == stamp  # the checkpoint is left as it was
    # more epochs under the plateau schedule is a legitimate continuation
    res = fit(*_toy(), FitConfig(**{**CFG.__dict__, "resume": True, "epochs": 4}), tmp_path, "toy")
    assert res.resumed_from == (0, 4) and res.epochs_run == 4


def test_fit_in_bf16_runs_forward_passes_in_bfloat16_and_keeps_float32_weights(tmp_path):
    from heritage.training.fit import checkpoint_precision

    model, train, val = _toy()
    seen: list[torch.dtype] = []
    model.register_forward_hook(lambda m, args, out: seen.append(out.dtype))
    cfg = FitConfig(**{**CFG.__dict__, "precision": "bf16", "epochs": 2})
    res = fit(model, train, val, cfg, tmp_path, "toy")
    assert res.epochs_run == 2 and np.isfinite(res.best_val_loss)
    assert seen and set(seen) == {torch.bfloat16}  # training and validation batches
    assert model.weight.dtype == torch.float32
    assert checkpoint_precision(tmp_path / "toy_checkpoint.pt") == "bf16"
    seen.clear()
    evaluate_loss(model, val, torch.device("cpu"))  # fp32 unless asked
    assert set(seen) == {torch.float32}
    # a checkpoint from before the setting existed counts as float32
    ck = torch.load(tmp_path / "toy_checkpoint.pt", weights_only=True)
    del ck["config"]["precision"]
    torch.save(ck, tmp_path / "old.pt")
    assert checkpoint_precision(tmp_path / "old.pt") == "fp32"


def test_precision_checks(tmp_path, monkeypatch, caplog):
    import heritage.training.fit as F
    from heritage.kernel.errors import ModelError

    info = tmp_path / "cpuinfo"
    info.write_text("processor : 0\nflags : fpu sse avx2 avx512f avx512_bf16\n")
    assert F.cpu_has_native_bf16(info) is True
    info.write_text("processor : 0\nflags : fpu sse avx2\n")
    assert F.cpu_has_native_bf16(info) is False
    assert F.cpu_has_native_bf16(tmp_path / "missing") is None
    with pytest.raises(ModelError, match="fp32, bf16"):
        F.check_precision(torch.device("cpu"), "fp16")
    monkeypatch.setattr(F, "cpu_has_native_bf16", lambda: False)
    with caplog.at_level("WARNING", logger="heritage.training.fit"):
        F.check_precision(torch.device("cpu"), "bf16")
    assert "emulated" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="heritage.training.fit"):
        F.check_precision(torch.device("cpu"), "fp32")
    assert caplog.text == ""


def test_a_truncated_checkpoint_is_refused_with_what_to_do(tmp_path):
    from heritage.kernel.errors import ModelError
    from heritage.training.fit import checkpoint_precision

    ck = tmp_path / "toy_checkpoint.pt"
    fit(*_toy(), CFG, tmp_path, "toy")
    ck.write_bytes(ck.read_bytes()[:100])
    for call in (
        lambda: fit(*_toy(), FitConfig(**{**CFG.__dict__, "resume": True}), tmp_path, "toy"),
        lambda: checkpoint_precision(ck),
    ):
        with pytest.raises(ModelError, match=r"cannot read checkpoint .*delete it to start over"):
            call()


def test_binary_metrics_and_mcnemar():
    y = np.array([0, 0, 1, 1, 1])
    m = binary_metrics(y, np.array([0.1, 0.7, 0.8, 0.9, 0.2]), 0.5)
    assert m["confusion"] == [[1, 1], [1, 2]]
    assert m["accuracy"] == pytest.approx(0.6) and m["recall"] == pytest.approx(2 / 3)
    assert binary_metrics(np.array([1, 1]), np.array([0.9, 0.8]), 0.5)["roc_auc"] is None
    t = mcnemar(y, np.array([0, 0, 1, 1, 1]), np.array([1, 1, 0, 1, 1]))
    assert (t["b_stage1_only_right"], t["c_stage2_only_right"]) == (3, 0)
    assert t["p_value"] == pytest.approx(0.25)


def test_oversample_repeats_only_the_named_dataset_and_rejects_typos():
    from heritage.kernel.errors import DataError
    from heritage.training.data import Item
    from heritage.training.train import oversample_indices

    def item(ds: str, i: int) -> Item:
        return Item(Path(f"/d/{ds}/{i}.png"), Path("/d"), ds, "crack", f"{ds}{i}", f"g{i}", "train")

    items = [item("dais", 0), item("sdnet", 1), item("sdnet", 2)]
    assert oversample_indices(items, {"dais": 3}) == [0, 0, 0, 1, 2]
    assert oversample_indices(items, {}) == [0, 1, 2]
    with pytest.raises(DataError, match=r"unknown dataset.*dias.*holds dais, sdnet"):
        oversample_indices(items, {"dias": 2})
    with pytest.raises(DataError, match="K >= 1"):
        oversample_indices(items, {"dais": 0})


def test_oversampling_sampler_shows_each_image_k_times_and_resumes_mid_epoch():
    # the repeats live in the sampler, not the dataset: an image is stored (and cached) once
    indices = [0, 0, 0, 1, 2]
    sampler = ResumableSampler(3, seed=7, indices=indices)
    assert len(sampler) == 5
    sampler.set_epoch(2)
    epoch = list(sampler)
    assert sorted(epoch) == indices
    # same order as a dataset holding the repeated items would give (the 0.3.0 recipe)
    repeated = ResumableSampler(5, seed=7)
    repeated.set_epoch(2)
    assert [indices[i] for i in repeated] == epoch
    sampler.set_epoch(2, skip=2)
    assert list(sampler) == epoch[2:] and len(sampler) == 3
    with pytest.raises(ValueError, match="indices must lie"):
        ResumableSampler(2, indices=[0, 2])


def test_cli_oversample_option_is_parsed_and_checked(tmp_path):
    from heritage.cli import cli

    r = CliRunner().invoke(
        cli, ["train", str(tmp_path), "-o", str(tmp_path / "m"), "--oversample", "dais"]
    )
    assert r.exit_code == 2 and "DATASET=K" in r.output


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
    assert card.training["cam_target"] == "positive"
    assert sum(card.training["counts_per_split"].values()) == 48
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
    assert len(_rows(run / "stage1_metrics.csv")) == 1
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
    n_train = sum(r["split"] == "train" for r in _rows(tmp_path / "r" / "split.csv"))
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
    train_rows = [r for r in _rows(tmp_path / "r" / "split.csv") if r["split"] == "train"]
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
    assert card.training["stage1_fit"]["split_checked"] == str(tmp_path / "cmp" / "split.csv")
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
