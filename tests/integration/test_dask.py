"""``heritage classify --workers 2`` (a local Dask cluster) gives what the local path gives.

Also: decode prefetch threads with background GeoPackage writes (the CLI default) give
bit-identical rows, and the survey classifier's speed levers keep the answers.

The 11 photos of exif-gps ``gps/`` (9 Arezzo photos and two large phone photos) are
classified once in this process and once on a 2-process LocalCluster (one thread, one
torch thread per worker) with a tiny 64-px model; both GeoPackages must hold the same
rows in the same order with the same scores and decisions, and every overlay must exist.
"""

from __future__ import annotations

from pathlib import Path

import pyogrio
import pytest
from factories import tiny_model_dir
from helpers import one_torch_thread

from heritage.survey.pipeline import ClassifyConfig, run_survey

pytest.importorskip("distributed")

COLUMNS = ["sha256", "file_name", "decision", "flagged", "stage1_label", "cam_method"]
SCORES = ["stage1_score", "p_stage1", "p_stage2", "p_final", "defect_area_fraction"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return tiny_model_dir(tmp_path_factory.mktemp("dask_model") / "tiny", threshold=0.5)


@pytest.fixture(scope="module")
def both(exif_gps: Path, tiny_model: Path, tmp_path_factory) -> dict[str, tuple[Path, object]]:
    """The same survey run locally and on two Dask worker processes."""
    out_dir = tmp_path_factory.mktemp("dask_out")
    with one_torch_thread():
        runs = {}
        variants = {"local": {}, "prefetch": {"decode_workers": 2}, "dask": {"workers": 2}}
        for name, extra in variants.items():
            out = out_dir / f"{name}.gpkg"
            cfg = ClassifyConfig(
                (exif_gps / "gps",), out, model_dir=tiny_model, device="cpu", batch_size=4, **extra
            )
            runs[name] = (out, run_survey(cfg))
    return runs


def _obs(out: Path):
    return pyogrio.read_dataframe(out, layer="observations", fid_as_index=True).sort_index()


def test_dask_matches_the_local_path(both) -> None:
    local, dask = _obs(both["local"][0]), _obs(both["dask"][0])
    assert len(local) == 11 and both["dask"][1].classified == 11
    assert list(dask["sha256"]) == list(local["sha256"])  # same rows in input order
    joined = local.merge(dask, on="sha256", suffixes=("_l", "_d"))
    assert len(joined) == 11
    for col in COLUMNS[1:]:
        assert (joined[f"{col}_l"] == joined[f"{col}_d"]).all(), col
    for col in SCORES:
        diff = (joined[f"{col}_l"] - joined[f"{col}_d"]).abs().max()
        assert diff <= 1e-5, (col, diff)
    assert list(dask["priority_category"]) == list(local["priority_category"])


def test_decode_prefetch_and_background_writes_match_the_local_path(both) -> None:
    local, pre = _obs(both["local"][0]), _obs(both["prefetch"][0])
    assert list(pre["sha256"]) == list(local["sha256"])
    for col in COLUMNS[1:] + SCORES:
        assert (pre[col] == local[col]).all(), col  # same process, same batches: bit-equal


def test_dask_workers_write_the_overlays(both) -> None:
    out = both["dask"][0]
    obs = _obs(out)
    for col in ("overlay_path", "heatmap_path", "thumbnail_path"):
        for rel in obs[col]:
            assert rel.startswith("dask_overlays/")
            assert (out.parent / rel).is_file() and (out.parent / rel).stat().st_size > 0


def test_worker_loads_model_once_and_checks_weights(tiny_model: Path, tmp_path: Path) -> None:
    from heritage.kernel.errors import ModelError
    from heritage.survey.distributed import _CLASSIFIERS, model_key, worker_classifier

    folder, sha = model_key(tiny_model)
    try:
        first = worker_classifier(folder, sha, "cpu")
        assert worker_classifier(folder, sha, "cpu") is first
        with pytest.raises(ModelError, match="same model folder"):
            worker_classifier(folder, "0" * 64, "cpu")
    finally:
        for clf in _CLASSIFIERS.values():
            clf.close()
        _CLASSIFIERS.clear()


def test_scheduler_and_workers_are_exclusive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="either"):
        ClassifyConfig((tmp_path,), tmp_path / "o.gpkg", scheduler="tcp://x:8786", workers=2)


def test_cli_refuses_scheduler_with_workers(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from heritage.cli.classify import classify

    res = CliRunner().invoke(
        classify, [str(tmp_path), "-o", str(tmp_path / "o.gpkg"), "--workers", "2",
                   "--scheduler", "tcp://127.0.0.1:1"],
    )  # fmt: skip
    assert res.exit_code == 2 and "not both" in res.output


def test_survey_classifier_levers_keep_the_answers(tiny_model: Path) -> None:
    """CAM backward cut at the CAM layer + channels-last stage 2: same maps and scores."""
    import numpy as np
    from PIL import Image

    from heritage.model.card import load_model
    from heritage.model.predict import TwoStageClassifier
    from heritage.survey.classify import make_classifier

    rng = np.random.default_rng(3)
    images = [Image.fromarray(rng.integers(0, 255, (80, 96, 3), dtype=np.uint8)) for _ in range(5)]
    with TwoStageClassifier(load_model(tiny_model), device="cpu") as plain:
        want = plain.classify(images)
    with make_classifier(load_model(tiny_model), "cpu") as fast:
        assert not any(p.requires_grad for p in fast.stage1.parameters())
        got = fast.classify(images)
    for w, g in zip(want, got, strict=True):
        assert g.stage1.label == w.stage1.label and g.cam_method == w.cam_method
        assert abs(g.p_stage2 - w.p_stage2) <= 1e-5 and abs(g.p_stage1 - w.p_stage1) <= 1e-6
        assert np.abs(g.cam - w.cam).max() <= 1e-5
        assert g.cam.max() > 0  # a real map, not an empty one on both sides
