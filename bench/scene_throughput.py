"""Speed of scene mode, the default of ``heritage classify`` (run by ``make bench``; not a test).

Three measurements, each in its own process (peak RSS reported), on the shipped model:

1. the pipeline (:func:`heritage.survey.pipeline.run_survey`, default settings: scene mode,
   decode prefetch) on the large phone photos of ``../shared/data/exif-gps`` (12 MP
   and similar), copied to N distinct files;
2. the same on the 640x480 Arezzo photos of that folder, copied to N distinct files;
3. the models alone on the very tiles the pipeline cut from the large photos, already
   decoded and cut: stage 1 on every tile in batches (scene mode's first pass) plus
   Grad-CAM and stage 2 on the tiles scene mode explains. That is the compute limit the
   pipeline (hashing, EXIF, decoding, cutting, gate, mosaic, PNGs, GeoPackage, priority,
   route) is compared with.

Writes ``docs/benchmarks-scene.md`` (text below the notes marker is kept).

Usage: ``python bench/scene_throughput.py [--n-large 24] [--n-small 45]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "exif-gps"
#: the large phone photos (12 MP class)
LARGE = ("gps/iphone_hdr_NO.jpg", "gps/HMD_Nokia_8.3_5G.jpg")
AREZZO = tuple(f"gps/DSCN00{n}.jpg" for n in (10, 12, 21, 25, 27, 29, 38, 40, 42))
SHIPPED = ROOT / "models" / "heritage-default"
NOTES_MARKER = "<!-- notes: kept by bench/scene_throughput.py -->"


def make_corpus(folder: Path, sources: tuple[str, ...], n: int) -> list[Path]:
    """``n`` copies of ``sources`` round robin, each with its own sha256 (bytes after EOI)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        src = DATA / sources[i % len(sources)]
        dst = folder / f"p{i:04d}_{src.name}"
        dst.write_bytes(src.read_bytes() + f"heritage-bench-{i}".encode())
        out.append(dst)
    return out


def child_pipeline(a: dict) -> dict:
    """run_survey with the CLI's defaults (scene mode) on a folder."""
    import pyogrio

    from heritage.survey import pipeline as survey

    cfg = survey.ClassifyConfig(
        (Path(a["photos"]),),
        Path(a["out"]),
        model_dir=Path(a["model"]),
        device="cpu",
        decode_workers=min(2, os.cpu_count() or 1),
    )

    class StageClock:
        """A progress sink that notes when each stage of the pipeline starts."""

        def __init__(self) -> None:
            self.started: dict[str, float] = {}

        def start(self, stage: str, total: int | None = None) -> None:
            self.started.setdefault(stage, time.perf_counter())

        def step(self, n: int = 1, **info: object) -> None:
            pass

        def message(self, text: str) -> None:
            pass

        def check_cancelled(self) -> None:
            pass

    clock = StageClock()
    t0 = time.perf_counter()
    s = survey.run_survey(cfg, clock)
    dt = time.perf_counter() - t0
    classify_s = clock.started[survey.STAGE_GROUP] - clock.started[survey.STAGE_CLASSIFY]
    obs = pyogrio.read_dataframe(a["out"], layer="observations", read_geometry=False)
    return {
        "photos": s.classified,
        "seconds": dt,
        "startup_seconds": clock.started[survey.STAGE_CLASSIFY] - t0,
        "classify_seconds": classify_s,
        "tiles": int(obs["n_tiles"].sum()),
        "flagged": int(obs["flagged"].sum()),
        "not_assessable": int((obs["decision"] == "not_assessable").sum()),
    }


def child_models(a: dict) -> dict:
    """The networks alone on the pipeline's tiles, pre-decoded and pre-cut: stage 1 (the
    scene classifier's tile network) on every tile of the grid and of the refinement, then
    Grad-CAM + stage 2 on the tiles the cascade explains (as many per photo as it does)."""
    import numpy as np
    import torch  # noqa: F401  (loaded before timing)

    from heritage.model.card import load_model
    from heritage.model.predict import load_image
    from heritage.model.preprocess import to_model_rgb
    from heritage.model.scene import load_scene_classifier, working_image
    from heritage.survey.classify import make_classifier

    loaded = load_model(a["model"])
    clf = make_classifier(loaded, "cpu")
    scene = load_scene_classifier(clf)
    st = scene.settings
    size = clf.card.input_size
    tiles, explain = [], []
    for path in a["photos"]:  # untimed: which windows and tiles the pipeline looks at
        work, _ = working_image(load_image(path), st.max_side)
        windows = st.windows(*work.size)
        p, feats = scene.score_tiles([to_model_rgb(work.crop(w), size) for w in windows])
        wall = scene.wall_mask(feats)
        if st.refine_candidates:
            windows, p, wall = scene._refine(work, windows, p, wall)
        tiles += [to_model_rgb(work.crop(w), size) for w in windows]
        hit = wall & (p >= scene.threshold)
        n = st.explain_tiles if hit.sum() >= st.min_flagged_tiles else 1
        order = np.argsort(-np.where(wall, p, -1.0), kind="stable")[: int(min(n, wall.sum()))]
        explain.append([work.crop(windows[int(i)]) for i in order])
    t0 = time.perf_counter()
    scene.score_tiles(tiles)
    for crops in explain:
        if crops:
            clf.classify(crops)
    dt = time.perf_counter() - t0
    return {"photos": len(a["photos"]), "seconds": dt, "tiles": len(tiles)}


CHILDREN = {"pipeline": child_pipeline, "models": child_models}


def run_child(kind: str, args: dict) -> dict:
    """One measurement in a fresh interpreter, with its peak RSS (MiB)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", kind, json.dumps(args)]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} failed:\n{proc.stderr[-3000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["rate"] = res["photos"] / res["seconds"]
    res["tile_rate"] = res["tiles"] / res["seconds"]
    print(f"  {kind}: {res['rate']:.2f} photos/s, {res['tile_rate']:.1f} tiles/s", flush=True)
    return res


def _child_main(kind: str, payload: str) -> None:
    import logging

    logging.disable(logging.WARNING)
    res = CHILDREN[kind](json.loads(payload))
    res["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(res))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-large", type=int, default=24, help="large phone photos in the run")
    ap.add_argument("--n-small", type=int, default=45, help="640x480 Arezzo photos in the run")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks-scene.md")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        _child_main(*a.child)
        return
    started, load0 = time.perf_counter(), os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="heritage-scene-bench-"))
    try:
        large = make_corpus(tmp / "large", LARGE, a.n_large)
        make_corpus(tmp / "small", AREZZO, a.n_small)
        model = str(SHIPPED)

        def pipe(folder: str) -> dict:
            args = {"photos": str(tmp / folder), "out": str(tmp / f"{folder}.gpkg")}
            return run_child("pipeline", {**args, "model": model})

        r = {
            "large": pipe("large"),
            "small": pipe("small"),
            "models": run_child(
                "models", {"photos": [str(p) for p in large[: len(LARGE) * 4]], "model": model}
            ),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    write_report(a, r, time.perf_counter() - started, (load0, os.getloadavg()[0]))


def write_report(a: argparse.Namespace, r: dict, total: float, load: tuple) -> None:
    """``docs/benchmarks-scene.md`` with the figures and the targets."""
    import torch

    notes = ""
    if a.out.exists() and NOTES_MARKER in a.out.read_text(encoding="utf-8"):
        notes = a.out.read_text(encoding="utf-8").split(NOTES_MARKER, 1)[1]
    lg, sm, md = r["large"], r["small"], r["models"]
    per_tile_pipe = lg["tiles"] / lg["seconds"]
    share = per_tile_pipe / md["tile_rate"]
    stage_rate = lg["photos"] / lg["classify_seconds"]
    stage_share = lg["tiles"] / lg["classify_seconds"] / md["tile_rate"]
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Speed of scene mode (the default of `heritage classify`)",
        "",
        f"Generated by `python bench/scene_throughput.py` (`make bench` runs it) on {now}; "
        f"the benchmark took {total / 60:.1f} min.",
        "",
        f"- CPU: {os.cpu_count()} core(s) visible, shared with other processes; 1-minute load "
        f"{load[0]:.1f} at the start, {load[1]:.1f} at the end; torch {torch.__version__}, "
        f"{torch.get_num_threads()} thread(s); Python {platform.python_version()}",
        "- model: the shipped model `models/heritage-default` with its card's scene settings",
        f"- large photos: {a.n_large} copies (distinct sha256) of the phone photos "
        f"{', '.join(Path(s).name for s in LARGE)} of `exif-gps` (3264x2448, 4608x1976)",
        f"- small photos: {a.n_small} copies of the nine 640x480 Arezzo photos of `exif-gps`",
        "",
        "Each pipeline row is the whole `run_survey` (model loading, hashing, EXIF, decoding, "
        "tiles, gate, Grad-CAM, overlays, GeoPackage, priority, route); the start-up column "
        "is the part before the first photo (loading the model), the classification-stage "
        "rate counts only the stage that classifies the photos.",
        "",
        "| measurement | photos | tiles | seconds | start-up s | photos/s | tiles/s "
        "| classification stage photos/s | peak RSS MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, res in (
        ("pipeline, large phone photos", lg),
        ("pipeline, 640x480 Arezzo photos", sm),
        ("models alone, the same large photos' tiles (stage 1 all, CAM + stage 2 explained)", md),
    ):
        startup = f"{res['startup_seconds']:.1f}" if "startup_seconds" in res else ""
        stage = (
            f"{res['photos'] / res['classify_seconds']:.2f}" if "classify_seconds" in res else ""
        )
        lines.append(
            f"| {name} | {res['photos']} | {res['tiles']} | {res['seconds']:.1f} | {startup} | "
            f"{res['rate']:.2f} | {res['tile_rate']:.1f} | {stage} | {res['peak_rss_mib']:.0f} |"
        )
    lines += [
        "",
        "## Targets",
        "",
        f"- large phone photos, whole command: **{lg['rate']:.2f} photos/s** (target >= 1): "
        f"**{'met' if lg['rate'] >= 1 else 'not met'}**; classification stage alone "
        f"{stage_rate:.2f} photos/s ({'met' if stage_rate >= 1 else 'not met'})",
        f"- pipeline / models alone on the same tiles, whole command: {per_tile_pipe:.1f} / "
        f"{md['tile_rate']:.1f} tiles/s = **{share:.1%}** (target >= 60 %): "
        f"**{'met' if share >= 0.6 else 'not met'}**; classification stage alone "
        f"{stage_share:.1%} ({'met' if stage_share >= 0.6 else 'not met'})",
        "",
        NOTES_MARKER,
    ]
    a.out.write_text("\n".join(lines) + notes, encoding="utf-8")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
