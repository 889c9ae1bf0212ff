"""The fit loop: metrics, early stopping, resume at the saved batch, bf16, checkpoints;
the training metrics and the oversampling sampler (on toy tensors, in seconds)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from helpers import StopAt, csv_rows
from torch.utils.data import TensorDataset

from heritage.kernel.errors import CancelledError
from heritage.training.data import make_loader
from heritage.training.fit import FitConfig, ResumableSampler, evaluate_loss, fit, predict_proba
from heritage.training.train import binary_metrics, mcnemar


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
    rows = csv_rows(tmp_path / "toy_metrics.csv")
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
