"""A reduced comparison (tiny images, 1 epoch, every model) writes the full table."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import click
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from heritage.model.measure import measure_throughput
from research.compare.command import compare
from research.compare.compare import (
    CSV_FIELDS,
    DEFAULT_ARCHS,
    DISPLAY,
    PAPER_ACCURACY,
    PER_IMAGE_FILE,
    RESULT_FILE,
    TWO_STAGE,
    input_size_for,
    run_order,
    single_answer,
    verdict,
)

CLASSES = ("crack", "no_crack")
#: ``compare`` in a group, so that the argument lists keep their command name
cli = click.Group(commands=[compare])


def _images(root: Path, n: int = 10) -> Path:
    """``root/set/{crack,no_crack}/*.png``: a dark line means crack."""
    from PIL import Image

    for c, cls in enumerate(CLASSES):
        for i in range(n):
            rng = np.random.default_rng(100 * c + i)
            a = rng.normal(150, 20, (40, 40, 3)).clip(0, 255).astype(np.uint8)
            if cls == "crack":
                x = int(rng.integers(5, 32))
                a[:, x : x + 3] = 20
            p = root / "set" / cls / f"{cls}_{i:02d}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(a).save(p)
    return root / "set"


def _slim_fc_heads(monkeypatch: pytest.MonkeyPatch) -> None:
    """AlexNet/VGG16 keep their real conv stacks, but their 4096-wide FC heads (57 M and
    120 M parameters, ~1-2 GB of checkpoint) are narrowed so the test stays fast. The
    real heads run in the reduced comparison of research/comparison.md."""
    import heritage.model.zoo as mz

    real = mz.build_model

    def build(arch: str, num_classes: int, pretrained: str | None = None) -> torch.nn.Module:
        model = real(arch, num_classes, pretrained)
        if arch in ("alexnet", "vgg16"):
            c = model.classifier
            first, mid, last = [i for i, m in enumerate(c) if isinstance(m, torch.nn.Linear)]
            c[first] = torch.nn.Linear(c[first].in_features, 16)
            c[mid] = torch.nn.Linear(16, 16)
            c[last] = torch.nn.Linear(16, num_classes)
        return model

    monkeypatch.setattr(mz, "build_model", build)


def reduced_args(data: Path, out: Path, *extra: str) -> list[str]:
    """``python -m research.compare`` at the reduced budget of these tests: 64 px, one epoch."""
    return ["compare", str(data), "-o", str(out), "--epochs", "1", "--image-size", "64",
            "--batch-size", "32", "--device", "cpu", "--bench-batch-size", "2",
            "--bench-batches", "1", "--no-efficientnet", *extra]  # fmt: skip


@pytest.fixture(scope="module")
def reduced_run(tmp_path_factory):

    mp = pytest.MonkeyPatch()
    _slim_fc_heads(mp)
    root = tmp_path_factory.mktemp("cmp")
    data = _images(root)
    out = root / "out"
    runner = CliRunner()
    res = runner.invoke(cli, reduced_args(data, out))
    assert res.exit_code == 0, res.output + repr(res.exception)
    yield out, data, runner
    mp.undo()
    shutil.rmtree(root, ignore_errors=True)  # ~450 MB of weights; pytest would keep it


def test_reduced_run_writes_every_row_and_column(reduced_run):
    out, _, _ = reduced_run
    rows = list(csv.DictReader((out / "comparison.csv").read_text(encoding="utf-8").splitlines()))
    assert [r["arch"] for r in rows] == list(DEFAULT_ARCHS)
    assert tuple(rows[0]) == CSV_FIELDS
    for r in rows:
        assert float(r["paper_accuracy"]) == PAPER_ACCURACY[r["arch"]]
        assert 0 <= float(r["accuracy"]) <= 100
        assert float(r["params_m"]) > 0 and float(r["size_mb"]) > 0
        assert float(r["cpu_images_per_s"]) > 0 and int(r["cpu_threads"]) >= 1
        assert int(r["test_images"]) == int(rows[0]["test_images"]) > 0  # one test split
        assert r["train_precision"] == "fp32"
    px = {r["arch"]: int(r["input_px"]) for r in rows}
    assert px["inception_v3"] == 75 and px["alexnet"] == 64  # inception's minimum
    # sizes are the fp32 safetensors files actually written
    size = (out / "vgg16" / "model.safetensors").stat().st_size
    assert abs(float(next(r for r in rows if r["arch"] == "vgg16")["size_mb"]) - size / 1e6) < 0.1
    two = next(r for r in rows if r["arch"] == TWO_STAGE)
    assert float(two["params_m"]) > float(
        next(r for r in rows if r["arch"] == "mobilenet_v3_small")["params_m"]
    )  # stage 1 + stage 2
    md = (out / "comparison.md").read_text(encoding="utf-8")
    main, per_dataset = md.split("Test accuracy per dataset (%)")
    assert main.count("\n| ") == len(DEFAULT_ARCHS) + 1  # separator + one line per model
    n_test = int(rows[0]["test_images"])
    assert f"| Model | set ({n_test}) |" in per_dataset
    assert per_dataset.count("\n| ") == len(DEFAULT_ARCHS) + 2  # header, separator, rows
    for row in json.loads((out / "results.json").read_text())["rows"]:
        assert row["test_per_dataset"]["set"]["n"] == n_test
        hits = row["test"]["confusion"][0][0] + row["test"]["confusion"][1][1]
        assert row["test_per_dataset"]["set"]["accuracy"] == pytest.approx(hits / n_test)
        if row["arch"] != TWO_STAGE:  # each image's decision, in evaluate's per-image format
            per_image = list(csv.DictReader((out / row["arch"] / PER_IMAGE_FILE).open()))
            assert len(per_image) == n_test and sum(r["correct"] == "1" for r in per_image) == hits
            assert {r["decision"] for r in per_image} <= {"0", "1"}
    for col in ("Paper accuracy (%)", "Precision (%)", "Recall (%)", "F1 (%)",
                "Parameters (M)", "Size (MB, fp32)", "CPU images/s"):  # fmt: skip
        assert col in md
    assert "MobileNetV3 alone" in md  # the two-stage claim is discussed, either way
    assert "Training arithmetic: float32 for every row." in md
    paired = json.loads((out / "results.json").read_text())["paired_with_best"]
    assert len(paired["vs"]) == len(DEFAULT_ARCHS) - 2  # the other networks, not two-stage
    assert all(m["n"] == int(rows[0]["test_images"]) for m in paired["vs"].values())
    assert f"Paired with {DISPLAY[paired['best']]} image by image" in md
    assert "efficientnet" not in md.lower() or "skipped" in md.lower()
    # finished rows drop their fit checkpoints, except the MobileNet one (two-stage seed)
    assert not (out / "vgg16" / "model_checkpoint.pt").exists()
    assert (out / "mobilenet_v3_small" / "model_checkpoint.pt").is_file()


def test_two_stage_reuses_the_mobilenet_row_and_the_split(reduced_run):
    out, _, _ = reduced_run
    res = json.loads((out / "results.json").read_text())
    two = next(r for r in res["rows"] if r["arch"] == TWO_STAGE)
    assert two["stage1_reused_from_mobilenet_row"] is True
    assert set(two["paired_vs_stage1"]) == {"b_stage1_only_right", "c_stage2_only_right", "p_value"}
    a = (out / "split.csv").read_text()
    assert (out / TWO_STAGE / "run" / "split.csv").read_text() == a
    ck_m = torch.load(out / "mobilenet_v3_small" / "model_checkpoint.pt", weights_only=True)
    ck_t = torch.load(out / TWO_STAGE / "run" / "stage1_checkpoint.pt", weights_only=True)
    for k, v in ck_m["best_state"].items():
        assert torch.equal(v, ck_t["best_state"][k])


def test_resume_skips_finished_models(reduced_run):

    out, data, runner = reduced_run
    before = {p: p.stat().st_mtime_ns for p in out.glob("*/result.json")}
    res = runner.invoke(cli, reduced_args(data, out, "--resume"))
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/result.json")} == before
    # the training arithmetic is not part of the budget: finished rows keep theirs
    res = runner.invoke(cli, reduced_args(data, out, "--resume", "--precision", "bf16"))
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/result.json")} == before
    assert "Training arithmetic: float32 for every row." in (out / "comparison.md").read_text()
    # another budget in the same folder is not mixed with these rows
    res = runner.invoke(
        cli,
        ["compare", str(data), "-o", str(out), "--max-per-class", "3", "--device", "cpu"],
    )
    assert res.exit_code != 0 and "other data or settings" in str(res.exception)


def test_two_rows_pair_image_by_image_with_pair_models(reduced_run):
    from conftest import load_script

    out, _, _ = reduced_run
    pm = load_script("research/compare/pair_models")
    a, b = pm.read_outcomes(out / "alexnet"), pm.read_outcomes(out / "vgg16")
    res = pm.pair(a, b)
    n = len(a)
    assert res["all"]["n"] == n and res["_unmatched"] == {"only_a": 0, "only_b": 0}
    rows = {r["arch"]: r for r in json.loads((out / "results.json").read_text())["rows"]}
    assert res["all"]["accuracy_a"] == pytest.approx(rows["alexnet"]["test"]["accuracy"])
    assert res["all"]["accuracy_b"] == pytest.approx(rows["vgg16"]["test"]["accuracy"])


def test_rows_train_cheapest_first_with_two_stage_after_its_mobilenet():
    assert run_order([*DEFAULT_ARCHS, "efficientnet_lite0"]) == [
        "mobilenet_v3_small", TWO_STAGE, "efficientnet_lite0", "alexnet", "googlenet",
        "inception_v3", "vgg16",
    ]  # fmt: skip
    assert run_order(["vgg16", TWO_STAGE, "alexnet"]) == ["alexnet", "vgg16", TWO_STAGE]


def test_table_only_reports_the_finished_rows_and_names_the_rest(reduced_run):

    out, data, runner = reduced_run
    names = ("comparison.csv", "comparison.md", "results.json", f"{TWO_STAGE}/result.json",
             "alexnet/result.json")  # fmt: skip
    kept = {n: (out / n).read_bytes() for n in names}
    hidden = out / "vgg16" / "result.json"
    hidden.rename(hidden.with_suffix(".hidden"))
    # a two-stage row finished before rows carried their paired counts gets them from its card
    old_row = json.loads(kept[f"{TWO_STAGE}/result.json"])
    del old_row["paired_vs_stage1"], old_row["test_per_dataset"]
    (out / TWO_STAGE / "result.json").write_text(json.dumps(old_row))
    # ... and a single-network row is scored again from its weights, to the same figures
    old_alexnet = json.loads(kept["alexnet/result.json"])
    per_dataset = old_alexnet.pop("test_per_dataset")
    (out / "alexnet" / "result.json").write_text(json.dumps(old_alexnet))
    per_image = {a: (out / a / PER_IMAGE_FILE).read_bytes() for a in ("alexnet", "googlenet")}
    (out / "alexnet" / PER_IMAGE_FILE).unlink()
    (out / "googlenet" / PER_IMAGE_FILE).unlink()  # a row with per-dataset figures but no file
    try:
        res = runner.invoke(cli, reduced_args(data, out, "--table-only"))
        assert res.exit_code == 0, res.output + repr(res.exception)
        assert not hidden.exists() and not (out / "vgg16" / "model_checkpoint.pt").exists()
        rows = list(csv.DictReader((out / "comparison.csv").read_text().splitlines()))
        assert [r["arch"] for r in rows] == [a for a in DEFAULT_ARCHS if a != "vgg16"]
        md = (out / "comparison.md").read_text()
        assert md.startswith("**Part of the run: 5 of 6 models finished; still to train: VGG16.")
        assert "--table-only" not in md
        two = next(r for r in json.loads((out / "results.json").read_text())["rows"]
                   if r["arch"] == TWO_STAGE)  # fmt: skip
        assert two["paired_vs_stage1"]["p_value"] <= 1.0
        assert two["test_per_dataset"]["set"]["n"] == two["test"]["n"]
        again = json.loads((out / "alexnet" / "result.json").read_text())["test_per_dataset"]
        assert again["set"] == pytest.approx(per_dataset["set"])
        for arch, blob in per_image.items():  # the same decisions as when the row finished
            assert [r["correct"] for r in csv.DictReader((out / arch / PER_IMAGE_FILE).open())] == [
                r["correct"] for r in csv.DictReader(blob.decode().splitlines())
            ], arch
    finally:
        hidden.with_suffix(".hidden").rename(hidden)
        for name, blob in kept.items():
            (out / name).write_bytes(blob)


def test_a_row_resumed_from_its_checkpoint_keeps_its_precision(tmp_path):

    data, out = _images(tmp_path), tmp_path / "out"
    args = reduced_args(data, out, "--archs", "mobilenet_v3_small", "--resume")
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output + repr(res.exception)
    (out / "mobilenet_v3_small" / "result.json").unlink()  # as if stopped before scoring
    res = CliRunner().invoke(cli, [*args, "--precision", "bf16"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    row = json.loads((out / "mobilenet_v3_small" / "result.json").read_text())
    assert row["train_precision"] == "fp32"  # its checkpoint's, not a mix of two


def test_precision_note_names_the_arithmetic_of_each_row():
    from research.compare.compare import precision_note

    rows = [{"arch": "alexnet"}, {"arch": "vgg16", "train_precision": "bf16"},
            {"arch": "googlenet", "train_precision": "fp32"}]  # fmt: skip
    note = precision_note(rows)
    assert note.startswith("Training arithmetic: bfloat16 mixed precision (autocast) for VGG16; ")
    assert "float32 for AlexNet, GoogLeNet" in note
    assert precision_note(rows[:1]) == "Training arithmetic: float32 for every row."


def test_table_only_without_finished_rows_says_to_train_first(tmp_path):

    data = _images(tmp_path)
    res = CliRunner().invoke(
        cli, ["compare", str(data), "-o", str(tmp_path / "o"), "--no-efficientnet", "--table-only"]
    )
    assert res.exit_code != 0 and "without --table-only first" in str(res.exception)


def test_input_sizes_and_throughput():
    assert input_size_for("inception_v3", None) == 299
    assert input_size_for("vgg16", None) == 224
    assert input_size_for("inception_v3", 64) == 75
    assert input_size_for(TWO_STAGE, 96) == 96
    m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1))
    r = measure_throughput(m, 32, batch_size=4, warmup=1, batches=2, threads=1)
    assert r["images_per_s"] > 0 and r["threads"] == 1 and r["batch_size"] == 4


def _row(arch: str, acc: float, n: int = 100) -> dict:
    return {"arch": arch, "input_px": 224, "test": {"accuracy": acc, "n": n}, "params": 1,
            "size_bytes": 1, "throughput": {"images_per_s": 1.0, "threads": 1}}  # fmt: skip


def test_verdict_says_where_the_paper_holds():
    rows = [_row("alexnet", 0.80), _row("mobilenet_v3_small", 0.90), _row(TWO_STAGE, 0.88)]
    text = verdict(rows)
    assert "does not hold here (-2.0 points)" in text
    assert "MobileNetV3 beats 1 of the 1 larger CNNs (AlexNet)" in text
    assert "Unlike the paper" in text  # paper's best is the two-stage model
    rows[2] = _row(TWO_STAGE, 0.95)
    assert "holds here (+5.0 points)" in verdict(rows) and "As in the paper" in verdict(rows)
    # the ImageNet-started efficientnet row is reported but not ranked with the others
    text = verdict([*rows, _row("efficientnet_lite0", 0.99)])
    assert "As in the paper, Two-stage" in text
    assert "efficientnet_lite0 (ImageNet) always starts from ImageNet weights" in text
    assert "reaches 99.0 % (+4.0 points from Two-stage" in text


def test_verdict_says_whether_the_ranking_is_beyond_chance():
    rows = [_row("alexnet", 0.80), _row("mobilenet_v3_small", 0.90)]
    vs = {
        "alexnet": {"b": 30, "c": 20, "n": 100, "p_value": 0.2},
        "efficientnet_lite0": {"b": 1, "c": 9, "n": 100, "p_value": 0.021},
    }
    paired = {"best": "mobilenet_v3_small", "vs": vs}
    text = verdict(rows, paired)
    assert (
        "Paired with MobileNetV3-Small image by image (exact McNemar; p >= 0.05 is within "
        "chance): AlexNet: only MobileNetV3-Small right on 30, only AlexNet on 20, p = 0.2; "
        "efficientnet_lite0 (ImageNet): only MobileNetV3-Small right on 1"
    ) in text
    assert "Paired with" not in verdict(rows)


def test_paired_with_best_reads_the_rows_per_image_files(tmp_path):
    from research.compare.compare import paired_with_best

    def write(arch: str, outcomes: str) -> dict:
        (tmp_path / arch).mkdir()
        lines = ["path,correct", *(f"{i}.png,{c}" for i, c in enumerate(outcomes))]
        (tmp_path / arch / PER_IMAGE_FILE).write_text("\n".join(lines) + "\n")
        return _row(arch, outcomes.count("1") / len(outcomes))

    rows = [write("alexnet", "1100"), write("vgg16", "1110"), write("efficientnet_lite0", "1111")]
    res = paired_with_best(tmp_path, [*rows, _row(TWO_STAGE, 1.0)])
    assert res["best"] == "vgg16"  # the ImageNet-started row is paired but not ranked
    assert res["vs"]["alexnet"] == {"b": 1, "c": 0, "n": 4, "p_value": 1.0}
    assert res["vs"]["efficientnet_lite0"]["c"] == 1 and TWO_STAGE not in res["vs"]
    assert paired_with_best(tmp_path, rows[:1]) == {}


def test_verdict_judges_the_two_stage_claim_with_its_paired_counts():
    rows = [_row("mobilenet_v3_small", 0.80), _row(TWO_STAGE, 0.82, n=1000)]
    paired = {"b_stage1_only_right": 40, "c_stage2_only_right": 60, "p_value": 0.057}
    rows[1]["paired_vs_stage1"] = paired
    text = verdict(rows)
    assert "is not supported here: +2.0 points is within chance" in text
    assert "stage 2 alone was right on 60, its stage 1 alone on 40, exact McNemar p = 0.057" in text
    rows[1]["paired_vs_stage1"] = {**paired, "c_stage2_only_right": 80, "p_value": 0.0001}
    assert "holds here (+2.0 points; paired" in verdict(rows)
    rows[1].update(decision_stage="stage1", test={"accuracy": 0.80, "n": 1000})
    text = verdict(rows)
    assert "does not hold here (+0.0 points" in text and "Validation chose stage 1" in text


def test_verdict_names_models_that_gave_one_answer_and_does_not_credit_the_two_stage():
    # MobileNetV3 said "conservation needed" for all 100 images (54 positive)
    mobilenet = _row("mobilenet_v3_small", 0.54)
    mobilenet["test"]["confusion"] = [[0, 46], [0, 54]]
    two_stage = _row(TWO_STAGE, 0.68)
    two_stage["test"]["confusion"] = [[30, 16], [16, 38]]
    alexnet = _row("alexnet", 0.10)
    alexnet["test"]["confusion"] = [[10, 0], [90, 0]]  # always "not needed"
    assert [single_answer(r) for r in (mobilenet, two_stage, alexnet)] == [
        "positive",
        None,
        "negative",
    ]
    text = verdict([alexnet, mobilenet, two_stage])
    assert "has not learned the task at this budget: AlexNet (not needed), " in text
    assert "MobileNetV3-Small (conservation needed)" in text
    assert "+14.0 points from MobileNetV3 alone, but that says nothing" in text
    assert "claim that the two-stage model beats MobileNetV3 alone" not in text


def test_split_fingerprint_follows_the_files_not_where_they_lie(tmp_path):
    from heritage.training.data import Item, split_fingerprint

    def items(root: str, last_split: str = "test") -> list[Item]:
        base = Path(root)
        return [Item(base / "set" / "crack" / f"{i}.png", base, "set", "crack", f"{i:064x}",
                     str(i), "train" if i < 2 else last_split) for i in range(3)]  # fmt: skip

    assert split_fingerprint(items("/a")) == split_fingerprint(items("/elsewhere/b")[::-1])
    assert split_fingerprint(items("/a")) != split_fingerprint(items("/a", "val"))


def test_rows_dir_keeps_finished_rows_for_a_machine_that_lost_the_run(reduced_run, tmp_path):
    """A row archived with --rows-dir is taken back, not retrained, on the same split only."""

    out, data, runner = reduced_run
    src, rows = tmp_path / "src", tmp_path / "rows"  # the run's figures, without its weights
    for f in [out / "split.csv", out / "split_meta.json", *out.glob("*/result.json"),
              *out.glob(f"*/{PER_IMAGE_FILE}")]:  # fmt: skip
        (src / f.relative_to(out)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, src / f.relative_to(out))
    res = runner.invoke(cli, reduced_args(data, src, "--resume", "--rows-dir", str(rows)))
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert sorted(p.parent.name for p in rows.glob("*/result.json")) == sorted(DEFAULT_ARCHS)
    assert not list(src.glob("*/*.safetensors"))  # nothing was trained to archive them

    fresh = tmp_path / "fresh"  # a new machine: the split is made again, the rows come back
    res = runner.invoke(cli, reduced_args(data, fresh, "--resume", "--rows-dir", str(rows)))
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert not list(fresh.glob("*/*.safetensors"))
    assert (fresh / "comparison.csv").read_text() == (out / "comparison.csv").read_text()

    row = json.loads((rows / "alexnet" / RESULT_FILE).read_text())
    (rows / "alexnet" / RESULT_FILE).write_text(json.dumps({**row, "split_fingerprint": "0"}))
    other = tmp_path / "other"  # scored on another split: trained again, not reused
    res = runner.invoke(cli, reduced_args(data, other, "--resume", "--rows-dir", str(rows),
                                          "--archs", "alexnet,mobilenet_v3_small"))  # fmt: skip
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert (other / "alexnet" / "model.safetensors").is_file()
    assert not (other / "mobilenet_v3_small" / "model.safetensors").exists()
    again = json.loads((rows / "alexnet" / RESULT_FILE).read_text())  # archived anew
    assert again["split_fingerprint"] == row["split_fingerprint"]


def test_figures_only_row_is_kept_marked_and_not_trained(reduced_run, tmp_path):
    """A lost row kept as figures only is taken back, marked, and never trained again."""
    from heritage.training.data import load_split, split_fingerprint

    out, data, runner = reduced_run
    real = json.loads((out / "alexnet" / RESULT_FILE).read_text())
    n = real["test"]["n"]
    # what research/compare/record_figures_only_rows.py writes: no weights, no per-image file
    row = {
        "arch": "alexnet", "input_px": 64, "figures_only": True,
        "figures_source": "copied from the lost run's table",
        "test": {"n": n, "accuracy": 0.5, "precision": None, "recall": None, "f1": 0.4},
        "test_per_dataset": {"set": {"n": n, "accuracy": 0.5}},
        "params": 1000, "size_bytes": 4000, "throughput": None, "epochs_run": 1,
        "budget": real["budget"], "split_fingerprint": split_fingerprint(load_split(out)),
    }  # fmt: skip
    rows = tmp_path / "rows"
    (rows / "alexnet").mkdir(parents=True)
    (rows / "alexnet" / RESULT_FILE).write_text(json.dumps(row))
    fresh = tmp_path / "fresh"
    res = runner.invoke(cli, reduced_args(data, fresh, "--resume", "--rows-dir", str(rows),
                                          "--archs", "alexnet"))  # fmt: skip
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert not list(fresh.glob("*/*.safetensors")) and not list(fresh.glob("*/*.pt"))
    md = (fresh / "comparison.md").read_text(encoding="utf-8")
    assert "| AlexNet † | 64 | 84.7 | 50.0 | n/a | n/a | 40.0 |" in md
    assert "| AlexNet † | 50.0 |" in md  # the per-dataset table
    assert "† Figures only" in md and "(AlexNet: copied from the lost run's table)" in md
    assert "Part of the run" not in md  # it counts as finished
    (csv_row,) = csv.DictReader((fresh / "comparison.csv").open(encoding="utf-8"))
    assert csv_row["figures_only"] == "1" and csv_row["cpu_images_per_s"] == ""

    (rows / "alexnet" / RESULT_FILE).write_text(json.dumps({**row, "split_fingerprint": "0"}))
    other = tmp_path / "other"  # figures of another split: not shown, the row is still to train
    res = runner.invoke(cli, reduced_args(data, other, "--table-only", "--rows-dir", str(rows),
                                          "--archs", "alexnet,mobilenet_v3_small"))  # fmt: skip
    assert res.exit_code != 0 and "no model of this comparison has finished" in str(res.exception)
