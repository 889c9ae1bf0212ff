"""heritage finetune --from-survey: a tiny model, five reviewed photos, a tiny standard set."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from factories import tiny_model_dir
from PIL import Image

from heritage.io.reviews import record_review
from heritage.kernel.errors import OutputNotWritableError
from heritage.survey.pipeline import ClassifyConfig, run_survey
from heritage.training.finetune import FinetuneConfig, run_finetune

PHOTOS = (
    "DSCN0010.jpg",
    "DSCN0012.jpg",
    "DSCN0025.jpg",
    "iphone_hdr_NO.jpg",
    "HMD_Nokia_8.3_5G.jpg",
)
VERDICTS = ("false_alarm", "confirmed", "confirmed", "false_alarm", "confirmed")


@pytest.fixture(scope="module")
def reviewed(exif_gps: Path, tmp_path_factory) -> tuple[Path, Path, dict[str, str]]:
    """(survey, base model, file -> sha256): every photo flagged, then reviewed."""
    import pyogrio

    root = tmp_path_factory.mktemp("finetune")
    model = tiny_model_dir(
        root / "base", model_id="tiny-review", stage2="mobilenet_v3_small", threshold=0.0
    )
    photos = root / "photos"
    photos.mkdir()
    for name in PHOTOS:
        shutil.copy(exif_gps / "gps" / name, photos / name)
    out = root / "survey.gpkg"
    run_survey(ClassifyConfig((photos,), out, model_dir=model, device="cpu"))
    obs = pyogrio.read_dataframe(out, layer="observations")
    sha = dict(zip(obs["file_name"], obs["sha256"], strict=True))
    for name, verdict in zip(PHOTOS, VERDICTS, strict=True):
        kind = "crack" if verdict == "confirmed" else None
        record_review(out, sha[name], verdict, reviewer="ana", defect_type=kind)
    return out, model, sha


@pytest.fixture(scope="module")
def standard(tmp_path_factory) -> Path:
    """A tiny ImageFolder with the model's classes (random textures)."""
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("standard") / "walls"
    for label in ("crack", "no_crack", "salt_damage"):
        (root / label).mkdir(parents=True)
        for i in range(10):
            pixels = rng.integers(0, 255, (72, 72, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / label / f"{label}_{i}.png")
    return root


def test_finetune_from_survey_reports_held_out_reviews_and_records_them(
    reviewed, standard: Path, tmp_path: Path
) -> None:
    from heritage.cli import cli
    from heritage.model.card import load_model

    survey, base, sha = reviewed
    # hold out exactly the photo whose sha256 prefix is smallest (the documented rule)
    first = min(int(s[:8], 16) for s in sha.values())
    share = (first + 1) / 16**8
    out = tmp_path / "tuned"
    args = ["finetune", "--from-survey", str(survey), "-o", str(out), "--model", str(base),
            "--data", str(standard), "--epochs", "1", "--replay", "3", "--max-test", "2",
            "--hold-out", repr(share), "--device", "cpu", "--json-progress"]  # fmt: skip
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    report = json.loads(r.output.strip().splitlines()[-1])
    assert report["reviews"] == 5 and report["reviews_held_out"] == 1
    for when in ("before", "after"):
        held = report[when]["held_out_reviews"]
        assert held["n"] == 1 and 0.0 <= held["accuracy"] <= 1.0
        assert report[when]["standard_test"]["n"] == 6  # 2 per class
    tuned = load_model(out)  # weights verified against the new card
    card = tuned.card
    ft = card.training["finetune"]
    # the card travels: the survey by its file name, no folder of this machine
    assert ft["surveys"] == [survey.name] and ft["reviews"] == 5 and ft["reviewers"] == ["ana"]
    assert str(tmp_path) not in (out / "model.json").read_text(encoding="utf-8")
    assert ft["reviews_per_class"] == {
        "held_out/" + ("no_crack" if VERDICTS[_pos(sha, first)] == "false_alarm" else "crack"): 1,
        **_train_counts(sha, first),
    }
    assert set(card.metrics["finetune"]) >= {"before", "after", "threshold"}
    assert card.version == "0.0.1+reviews" and card.threshold == 0.0
    import torch

    before = load_model(base)
    s1, s1_base = tuned.stage1.state_dict(), before.stage1.state_dict()
    assert any(not torch.equal(s1[k], s1_base[k]) for k in s1)  # stage 1 trained
    s2, s2_base = tuned.stage2.state_dict(), before.stage2.state_dict()
    assert all(torch.equal(s2[k], s2_base[k]) for k in s2)  # stage 2 kept


def _pos(sha: dict[str, str], first: int) -> int:
    return next(i for i, n in enumerate(PHOTOS) if int(sha[n][:8], 16) == first)


def _train_counts(sha: dict[str, str], first: int) -> dict[str, int]:
    counts: dict[str, int] = {}
    for i, name in enumerate(PHOTOS):
        if int(sha[name][:8], 16) == first:
            continue
        key = "train/" + ("no_crack" if VERDICTS[i] == "false_alarm" else "crack")
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def test_the_base_model_is_not_replaced_unless_asked(reviewed) -> None:
    survey, base, _ = reviewed
    cfg = FinetuneConfig(surveys=(str(survey),), model_dir=str(base), base_model=str(base))
    with pytest.raises(OutputNotWritableError, match="--replace-default"):
        run_finetune(cfg)


def test_the_quick_stage1_score_is_the_classifiers_p_final(reviewed, tmp_path: Path) -> None:
    """A model deciding on stage 1 is scored without Grad-CAM: same p_final."""
    import dataclasses

    from heritage.model.card import load_model
    from heritage.model.predict import TwoStageClassifier
    from heritage.training.finetune import _p_final

    _, base, _ = reviewed
    loaded = load_model(base)
    loaded = dataclasses.replace(
        loaded, card=dataclasses.replace(loaded.card, decision_stage="stage1")
    )
    photos = sorted((base.parent / "photos").iterdir())
    quick = _p_final(loaded, photos, "cpu", 2)
    with TwoStageClassifier(loaded, "cpu") as clf:
        full = [r.p_final for _, r in clf.classify_paths(photos, 2)]
    assert quick == pytest.approx(full, abs=1e-5)
