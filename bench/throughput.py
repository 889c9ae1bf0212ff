"""Throughput benchmark of ``heritage classify`` (run by ``make bench``; not a test).

Measures, on one corpus of full-size real photos and in one run:

1. the shipped pipeline end to end (:func:`heritage.survey.pipeline.run_survey`: hashing, EXIF,
   decoding, stage 1, Grad-CAM, stage 2, overlays, GeoPackage, priority, route);
2. a naive reference written the obvious way (full-size decode, resize, one photo at
   a time, a new CAM object per photo, one GeoPackage write per row);
3. the models alone on pre-decoded 224x224 images in batches (stage 1 + CAM +
   overlay + stage 2: the compute limit);

plus the levers (JPEG draft decoding, decode prefetch threads, batch size, a local
Dask cluster, channels-last, torch threads). Every measurement runs in a child
process that reports its own peak RSS. The results go to ``docs/benchmarks.md``.

The corpus: the large phone photos and the Arezzo photos of
``../shared/data/exif-gps`` copied round-robin to N files in a temporary folder; each
copy gets a few different bytes after the JPEG end-of-image marker, so every copy has
its own sha256 (the importer skips duplicate content) and the same pixels.

Usage: ``python bench/throughput.py [--n-photos 1000] [--quick] [--out docs/benchmarks.md]``
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
#: the large phone photos, repeated to fill the corpus (a survey is 12-20 MP photos)
LARGE = (
    "gps/iphone_hdr_NO.jpg",
    "gps/HMD_Nokia_8.3_5G.jpg",
    "gps_edge_cases/67-0_length_string.jpg",
    "gps_edge_cases/87_OSError.jpg",
)
#: the Arezzo set (640x480), each photo once, spread evenly through the corpus
AREZZO = tuple(f"gps/DSCN00{n}.jpg" for n in (10, 12, 21, 25, 27, 29, 38, 40, 42))
SHIPPED = ROOT / "models" / "heritage-default"
LABELS = ("crack", "intact", "salt_damage")
#: what follows this line in the report is kept when the benchmark is run again
NOTES_MARKER = "<!-- notes: kept by bench/throughput.py -->"


# ------------------------------------------------------------------ setup


def corpus_sources(n: int) -> list[str]:
    """Which source photo each of the ``n`` corpus files copies: the Arezzo photos once
    each at evenly spaced positions (none twice), the large photos round robin elsewhere."""
    arezzo = AREZZO[: max(0, n - len(LARGE))]
    slots = {round((k + 0.5) * n / len(arezzo)): a for k, a in enumerate(arezzo)} if arezzo else {}
    large = iter(LARGE * (n // len(LARGE) + 1))
    return [slots[i] if i in slots else next(large) for i in range(n)]


def make_corpus(folder: Path, n: int) -> list[Path]:
    """``n`` distinct files (see :func:`corpus_sources`) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    blobs: dict[str, bytes] = {}
    out = []
    for i, src in enumerate(corpus_sources(n)):
        blob = blobs.setdefault(src, (DATA / src).read_bytes())
        path = folder / f"{i:05d}_{Path(src).stem}.jpg"
        # bytes after the EOI marker: a new sha256, the same pixels
        path.write_bytes(blob + f"heritage-bench-{i:06d}".encode())
        out.append(path)
    return out


def link_subset(files: list[Path], folder: Path) -> Path:
    """A folder with hard links to ``files`` (no extra disk)."""
    folder.mkdir(parents=True, exist_ok=True)
    for f in files:
        os.link(f, folder / f.name)
    return folder


def model_dir(tmp: Path) -> tuple[Path, str]:
    """The shipped model, or a random-init one of the same architectures at 224 px."""
    if (SHIPPED / "model.json").is_file():
        return SHIPPED, f"shipped model `{SHIPPED.relative_to(ROOT)}`"
    import torch

    from heritage.model.card import ModelCard, StageCard, save_model
    from heritage.model.zoo import build_model

    torch.manual_seed(0)
    card = ModelCard(
        model_id="bench-random",
        version="0.0.0",
        input_size=224,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        positive_labels=("crack", "salt_damage"),
        stage1=StageCard("mobilenet_v3_small", "", "", 3, LABELS),
        stage2=StageCard("resnet18", "", "", 1, ("conservation_needed",)),
        cam_layer="features.12",
        cam_method="gradcam",
        threshold=0.5,
        decision_stage="stage2",
    )
    path = tmp / "model-random"
    save_model(
        path,
        card,
        build_model("mobilenet_v3_small", 3).eval(),
        build_model("resnet18", 1).eval(),
    )
    return path, (
        "random-init model of the shipped architectures (mobilenet_v3_small stage 1 + "
        "resnet18 stage 2, 224 px, Grad-CAM on features.12; `models/heritage-default` was "
        "not there; throughput does not depend on the weights)"
    )


# ------------------------------------------------------------------ children


def child_pipeline(a: dict) -> dict:
    """run_survey on a folder (optionally without draft decoding)."""
    import torch

    from heritage.survey import classify
    from heritage.survey import pipeline as survey

    if a.get("threads"):
        torch.set_num_threads(a["threads"])
    if a.get("no_draft"):
        classify.decode_sides = lambda cfg, card: (None, None)  # full-size decode
    cfg = survey.ClassifyConfig(
        (Path(a["photos"]),),
        Path(a["out"]),
        model_dir=Path(a["model"]),
        device="cpu",
        batch_size=a.get("batch_size", 8),
        mode="whole",  # this benchmark measures whole-image mode; scene_throughput.py the default
        decode_workers=a.get("decode_workers", 0),
        workers=a.get("workers", 0),
    )
    t0 = time.perf_counter()
    s = survey.run_survey(cfg)
    dt = time.perf_counter() - t0
    return {"photos": s.classified, "seconds": dt, "skipped": s.skipped_total}


def child_naive(a: dict) -> dict:
    """The obvious implementation: one photo at a time, full-size decode, row by row."""
    import geopandas as gpd
    import shapely
    import torch

    from heritage.model.card import load_model
    from heritage.model.explain import CamExplainer, heatmap_png, save_png
    from heritage.model.predict import load_image, stage2_inputs
    from heritage.model.preprocess import normalise, to_model_rgb
    from heritage.survey.photos import find_photo_files, inspect_photo, sha256_file

    loaded = load_model(a["model"])
    card = loaded.card
    s1, s2 = loaded.stage1.eval(), loaded.stage2.eval()
    out, folder = Path(a["out"]), Path(a["out"]).with_suffix("")
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    n = 0
    for path in find_photo_files([Path(a["photos"])]):
        sha = sha256_file(path)
        photo = inspect_photo(path, sha)
        image = load_image(path)  # full size
        rgb = to_model_rgb(image, card.input_size)
        x = normalise([rgb], card.mean, card.std)
        with torch.no_grad():
            probs = torch.softmax(s1(x), dim=-1)[0].numpy()
        cam = CamExplainer(s1, card.cam_layer, method=card.cam_method)  # a new one per photo
        heat = cam.explain(x, [int(probs.argmax())]).maps[0]
        cam.close()
        overlays, x2 = stage2_inputs([rgb], [heat], card.stage2_cam_alpha, card.mean, card.std)
        with torch.no_grad():
            p2 = float(torch.sigmoid(s2(x2)).reshape(-1)[0])
        save_png(folder / f"{sha[:20]}_overlay.png", overlays[0])
        heatmap_png(folder / f"{sha[:20]}_heatmap.png", heat)
        thumb = image.copy()
        thumb.thumbnail((480, 480))
        thumb.save(folder / f"{sha[:20]}_thumb.jpg", quality=85)
        pos = getattr(photo, "position", None)
        row = gpd.GeoDataFrame(
            {"sha256": [sha], "p_stage1": [float(probs[[0, 2]].sum())], "p_stage2": [p2]},
            geometry=[shapely.Point(pos.lon, pos.lat) if pos else None],
            crs="EPSG:4326",
        )
        row.to_file(out, layer="observations", driver="GPKG", mode="a" if n else "w")
        n += 1
    return {"photos": n, "seconds": time.perf_counter() - t0}


def child_models(a: dict) -> dict:
    """Stage 1 + CAM + overlay + stage 2 on pre-decoded 224x224 images, in batches."""
    import numpy as np
    import torch
    from PIL import Image

    from heritage.model.card import load_model
    from heritage.model.predict import TwoStageClassifier
    from heritage.survey.classify import make_classifier

    if a.get("threads"):
        torch.set_num_threads(a["threads"])
    loaded = load_model(a["model"])
    if a.get("plain"):  # TwoStageClassifier as it is, without the survey's levers
        clf = TwoStageClassifier(loaded, device="cpu")
    else:  # as the survey runs it (levers on unless switched off)
        clf = make_classifier(
            loaded,
            "cpu",
            cam_head_only=a.get("cam_head_only", True),
            channels_last=a.get("channels_last", True),
        )
    size, bs, n = clf.card.input_size, a.get("batch_size", 8), a["n"]
    rng = np.random.default_rng(0)
    images = [
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)) for _ in range(bs)
    ]
    clf.classify(images)  # warm-up
    t0 = time.perf_counter()
    done = 0
    while done < n:
        clf.classify(images)
        done += bs
    return {"photos": done, "seconds": time.perf_counter() - t0}


CHILDREN = {"pipeline": child_pipeline, "naive": child_naive, "models": child_models}


def run_child(kind: str, args: dict) -> dict:
    """Run one measurement in a fresh interpreter; its result with its peak RSS (MiB)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", kind, json.dumps(args)]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} {args} failed:\n{proc.stderr[-3000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["rate"] = res["photos"] / res["seconds"]
    print(f"  {kind:9s} {json.dumps(args)[:90]} -> {res['rate']:.2f} photos/s, "
          f"{res['peak_rss_mib']:.0f} MiB", flush=True)  # fmt: skip
    return res


def _child_main(kind: str, payload: str) -> None:
    import logging

    logging.disable(logging.WARNING)
    res = CHILDREN[kind](json.loads(payload))
    res["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(res))


# ------------------------------------------------------------------ report


def machine() -> dict:
    """CPU model, cores, torch version and threads."""
    import torch

    cpu = platform.processor() or "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": "cpu" + (" (CUDA available, not used)" if torch.cuda.is_available() else ""),
        "python": platform.python_version(),
        "os": platform.platform(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-photos", type=int, default=1000, help="size of the large pipeline run")
    ap.add_argument("--quick", action="store_true", help="smaller sizes (300/100/40)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    ap.add_argument("--no-levers", action="store_true", help="skip the lever runs")
    ap.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)  # checks the script
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        _child_main(*a.child)
        return
    n_large = min(a.n_photos, 300) if a.quick else a.n_photos
    n_small = min(100, n_large)
    n_naive = 40 if a.quick else 100
    n_lever = 40 if a.quick else 100
    n_models = 96 if a.quick else 256
    if a.smoke:
        n_large = n_small = n_naive = n_lever = min(a.n_photos, 8)
        n_models = 8
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="heritage-bench-"))
    try:
        model, model_text = model_dir(tmp)
        print(f"model: {model_text}\ncorpus: {n_large} photos in {tmp}", flush=True)
        files = make_corpus(tmp / "all", n_large)
        small = link_subset(files[:n_small], tmp / "small")
        lever = link_subset(files[:n_lever], tmp / "lever")
        naive_dir = link_subset(files[:n_naive], tmp / "naive")
        mb = sum(f.stat().st_size for f in files) / 2**20

        def pipe(photos: Path, tag: str, **kw: object) -> dict:
            out = tmp / "out" / f"{tag}.gpkg"
            out.parent.mkdir(exist_ok=True)
            args = {"photos": str(photos), "out": str(out), "model": str(model), **kw}
            return run_child("pipeline", args)

        dw = min(2, os.cpu_count() or 1)
        r: dict[str, dict] = {}
        r["models"] = run_child("models", {"model": str(model), "n": n_models})
        r["naive"] = run_child(
            "naive", {"photos": str(naive_dir), "out": str(tmp / "naive.gpkg"), "model": str(model)}
        )
        r["pipe_small"] = pipe(small, "small", decode_workers=dw)
        r["pipe_large"] = pipe(tmp / "all", "large", decode_workers=dw)
        levers: dict[str, dict] = {}
        if not a.no_levers:
            levers["pipeline, decode_workers=0 (decode in turn)"] = pipe(lever, "dw0")
            levers[f"pipeline, decode_workers={dw} (CLI default)"] = pipe(
                lever, "dw", decode_workers=dw
            )
            levers["pipeline, no JPEG draft mode (full-size decode)"] = pipe(
                lever, "nodraft", decode_workers=dw, no_draft=True
            )
            levers["pipeline, batch_size=1 (one photo per batch and transaction)"] = pipe(
                lever, "bs1", decode_workers=dw, batch_size=1
            )
            levers["pipeline, batch_size=16"] = pipe(
                lever, "bs16", decode_workers=dw, batch_size=16
            )
            levers["pipeline, local Dask cluster --workers 2 (1 torch thread each)"] = pipe(
                lever, "dask2", workers=2
            )
            m = {"model": str(model), "n": min(n_models, 192)}
            levers["models alone, as the survey runs them (both levers below on)"] = run_child(
                "models", m
            )
            levers["models alone, plain TwoStageClassifier (neither lever)"] = run_child(
                "models", {**m, "plain": True}
            )
            levers["models alone, Grad-CAM backward through the whole network"] = run_child(
                "models", {**m, "cam_head_only": False}
            )
            levers["models alone, stage 2 not channels-last"] = run_child(
                "models", {**m, "channels_last": False}
            )
            levers["models alone, 1 torch thread"] = run_child("models", {**m, "threads": 1})
            levers["models alone, batch 16"] = run_child("models", {**m, "batch_size": 16})
        total = time.perf_counter() - started
        load = (load_before, os.getloadavg()[0])
        write_report(a, r, levers, machine(), model_text, n_large, n_small, n_naive, n_lever, mb,
                     total, load)  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_report(
    a: argparse.Namespace,
    r: dict[str, dict],
    levers: dict[str, dict],
    mach: dict,
    model_text: str,
    n_large: int,
    n_small: int,
    n_naive: int,
    n_lever: int,
    mb: float,
    total: float,
    load: tuple[float, float],
) -> None:
    """Write the Markdown report."""
    pipe, naive, models = r["pipe_large"]["rate"], r["naive"]["rate"], r["models"]["rate"]
    mem_small, mem_large = r["pipe_small"]["peak_rss_mib"], r["pipe_large"]["peak_rss_mib"]
    t1, t2, t3 = pipe / naive, pipe / models, mem_large / mem_small
    ok = {True: "**met**", False: "**NOT met**"}
    cmd = "python bench/throughput.py" + (" --quick" if a.quick else "")
    cmd += f" --n-photos {a.n_photos}" if a.n_photos != 1000 else ""
    lines = [
        "# Throughput of `heritage classify --mode whole`",
        "",
        "The default mode, `scene`, is measured by `bench/scene_throughput.py` (also run by "
        "`make bench`): [benchmarks-scene.md](benchmarks-scene.md). This file measures "
        "whole-image mode, the pipeline's levers and the models alone.",
        "",
        f"Generated by `{cmd}` (`make bench` runs it with the defaults) on "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}; the whole benchmark took "
        f"{total / 60:.1f} min.",
        "",
        "## Machine",
        "",
        f"- CPU: {mach['cpu']}, {mach['cores']} core(s) visible (shared with other users "
        "of the machine); device: " + mach["device"],
        f"- 1-minute load average {load[0]:.1f} at the start, {load[1]:.1f} at the end "
        "(other processes on the machine compete for the cores; figures vary between runs)",
        f"- torch {mach['torch']} with {mach['threads']} thread(s); Python {mach['python']}; "
        f"{mach['os']}",
        f"- model: {model_text}",
        f"- corpus: {n_large} JPEGs ({mb:.0f} MiB): the large phone photos of "
        "`exif-gps` (3264x2448, 4608x1976, 4032x2012, 1488x2240) repeated round robin, "
        "plus the 9 Arezzo photos (640x480) once each, spread evenly; every copy has "
        "distinct bytes after the JPEG end marker (new sha256, same pixels). The smaller "
        "runs use the first files of the same corpus. Each measurement runs in its own "
        "process (peak RSS of that process).",
        "",
        "## Results",
        "",
        "| measurement | photos | seconds | photos/s | peak RSS MiB |",
        "|---|---:|---:|---:|---:|",
    ]

    def row(name: str, res: dict) -> str:
        return (
            f"| {name} | {res['photos']} | {res['seconds']:.1f} | {res['rate']:.2f} | "
            f"{res['peak_rss_mib']:.0f} |"
        )

    lines += [
        row(f"1. pipeline (`run_survey`, batch 8, decode prefetch), {n_large} photos",
            r["pipe_large"]),
        row(f"1. pipeline, {n_small} photos", r["pipe_small"]),
        row(f"2. naive reference, {n_naive} photos", r["naive"]),
        row("3. models alone (stage 1 + Grad-CAM + overlay + stage 2, batch 8)", r["models"]),
    ]  # fmt: skip
    lines += [
        "",
        "## Targets",
        "",
        f"- pipeline / naive = {pipe:.2f} / {naive:.2f} = **{t1:.2f}x** "
        f"(target >= 3x): {ok[t1 >= 3]}",
        f"- pipeline / models alone = {pipe:.2f} / {models:.2f} = **{100 * t2:.0f} %** "
        f"(target >= 60 %): {ok[t2 >= 0.6]}",
        f"- peak RSS {n_large} photos / {n_small} photos = {mem_large:.0f} / {mem_small:.0f} "
        f"MiB = **{t3:.2f}x** (target <= 1.2x): {ok[t3 <= 1.2]}"
        + ("" if n_large >= 1000 else f" (measured at {n_large}, not 1,000: `--quick`)"),
        "",
    ]
    if levers:
        lines += [
            "## Levers",
            "",
            f"Pipeline levers on {n_lever} photos (one process each); model levers on "
            "pre-decoded 224x224 batches.",
            "",
            "| lever | photos/s | peak RSS MiB |",
            "|---|---:|---:|",
        ]
        lines += [f"| {k} | {v['rate']:.2f} | {v['peak_rss_mib']:.0f} |" for k, v in levers.items()]
        lines.append("")
    text = "\n".join(lines)
    if a.out.is_file():  # hand-written notes below the marker survive a re-run
        old = a.out.read_text()
        if NOTES_MARKER in old:
            text += "\n" + old[old.index(NOTES_MARKER) :]
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(text)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
