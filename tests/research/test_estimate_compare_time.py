"""research/compare/estimate_compare_time.py: the projection arithmetic and a tiny real timing."""

from __future__ import annotations

from conftest import load_script

est = load_script("research/compare/estimate_compare_time")


def test_projection_counts_epochs_of_train_and_val_batches_plus_one_test_pass():
    counts = {"train": 64, "val": 33, "test": 32}  # 2, 2 and 1 batches of 32
    assert est.project(1.0, 0.5, counts, epochs=2, batch_size=32) == 2 * (2 + 2 * 0.5) + 0.5


def test_split_counts_read_the_split_file(tmp_path):
    f = tmp_path / "split.csv"
    f.write_text("path,label,split\na,crack,train\nb,crack,train\nc,no_crack,test\n")
    assert est.split_counts(f) == {"train": 2, "val": 0, "test": 1}
    assert est.split_counts(None) == est.FULL_SPLIT


def test_rows_come_in_training_order_with_positive_times(tmp_path):
    out = tmp_path / "t.md"
    args = ["--archs", "two_stage,mobilenet_v3_small", "--image-size", "32", "--steps", "1",
            "--epochs", "1", "--batch-size", "2", "--out", str(out)]  # fmt: skip
    rows = est.main(args)
    assert [r["arch"] for r in rows][:2] == ["mobilenet_v3_small", "two_stage"]
    assert all(r["hours"] > 0 and r["train_step_s"] > 0 for r in rows)
    text = out.read_text()
    assert "MobileNetV3-Small" in text and "**All rows**" in text
    assert "`.venv/bin/python research/compare/estimate_compare_time.py --archs two_stage," in text


def test_training_steps_are_timed_in_the_asked_precision_and_evaluation_in_float32():
    import torch

    lin = torch.nn.Linear(3 * 8 * 8, 4)
    seen: list[torch.dtype] = []
    lin.register_forward_hook(lambda m, a, out: seen.append(out.dtype))
    model = torch.nn.Sequential(torch.nn.Flatten(), lin)
    t_train, t_eval = est.time_steps(model, 8, 2, 1, precision="bf16")
    assert t_train > 0 and t_eval > 0
    assert seen[:2] == [torch.bfloat16, torch.bfloat16]  # warm-up and timed training step
    assert set(seen[2:]) == {torch.float32}  # evaluation batches
    assert "bfloat16 mixed precision" in est.PRECISION_NAMES["bf16"]
