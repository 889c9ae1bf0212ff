"""Time ``heritage report`` on a synthetic 1,000-photo survey (``make bench-report``; not a test).

The survey is built without a model, as ``heritage classify`` in its default scene mode
would write it for 12-megapixel photos: an ``observations`` layer of N photos
(``heritage.survey.pipeline.observations_schema``) whose thumbnails (480 px JPEG) and overlays
(JPEG of the whole photo, ``--overlay-px`` on the longer side, 1280 by default as scene
mode writes them (``ClassifyConfig.scene_overlay_px``, same JPEG quality): the
photo with a heat-map blob blended in) are made from the demo's real photos
(resources/demo/photos, round robin), with the strongest tile's box and tile
counts. The 21 distinct images are hard-linked, not copied, to fill the survey. Photos
stand in groups of ``--per-building`` around building centres 60 m apart; a share
``--flagged`` of them is flagged with random confidences and defect extents; then
:func:`heritage.survey.pipeline.update_priority` groups, scores and routes them (DBSCAN
clusters, as without footprints).

Then the command itself runs in a child process, timed from the outside (wall
clock, including Python's start-up): HTML + CSV, then HTML + CSV + PDF. Sizes of the
HTML with its image folder and of the PDF are reported. Results go to
``docs/benchmarks-report.md``.

Usage: ``python bench/report_time.py [--photos 1000] [--flagged 0.4] [--out FILE]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "resources" / "demo" / "photos"
#: a point in the historic centre of Arezzo (the demo survey's area)
ORIGIN = (11.8800, 43.4630)


def _images(folder: Path, n_sources: int, overlay_px: int) -> list[tuple[Path, Path]]:
    """(thumbnail JPEG, overlay JPEG) files in ``folder`` made from the demo photos."""
    import numpy as np
    from PIL import Image, ImageOps

    from heritage.model.explain import save_jpeg

    out = []
    rng = np.random.default_rng(0)
    w, h = overlay_px, overlay_px * 3 // 4
    for k, path in enumerate(sorted(DEMO.iterdir())[:n_sources]):
        with Image.open(path) as im:
            rgb = ImageOps.fit(ImageOps.exif_transpose(im).convert("RGB"), (4032, 3024))
        thumb = rgb.copy()
        thumb.thumbnail((480, 480))
        thumb_path = folder / f"src{k:02d}_thumb.jpg"
        thumb.save(thumb_path, "JPEG", quality=85)
        base = np.asarray(rgb.resize((w, h), Image.Resampling.BILINEAR), dtype=np.float32)
        yy, xx = np.mgrid[0:h, 0:w]
        cx, cy = rng.uniform(0.2, 0.8, 2) * (w, h)
        heat = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * (0.12 * w) ** 2))
        colour = np.stack([heat, 1 - np.abs(heat - 0.5) * 2, 1 - heat], axis=-1) * 255
        blend = 0.55 * base + 0.45 * colour
        overlay_path = folder / f"src{k:02d}_overlay.jpg"
        save_jpeg(overlay_path, blend.clip(0, 255).astype("uint8"))  # as classify writes it
        out.append((thumb_path, overlay_path))
    return out


def make_survey(
    out: Path, n: int, flagged: float, per_building: int, overlay_px: int = 1280, seed: int = 0
) -> dict:
    """Write the synthetic survey ``out`` (and its overlay folder); returns its totals."""
    import math

    import numpy as np
    from shapely.geometry import Point

    from heritage.io.gpkg import BatchWriter
    from heritage.survey.classify import DECISION_FLAGGED, DECISION_NOT_FLAGGED, ClassifyConfig
    from heritage.survey.pipeline import (
        observations_schema,
        overlays_dir_for,
        update_priority,
    )

    rng = np.random.default_rng(seed)
    overlays = overlays_dir_for(out)
    overlays.mkdir(parents=True, exist_ok=True)
    sources = overlays.parent / f"{overlays.name}_sources"
    sources.mkdir(exist_ok=True)
    images = _images(sources, 21, overlay_px)
    n_buildings = math.ceil(n / per_building)
    side = math.ceil(math.sqrt(n_buildings))
    m_lat = 1 / 111_320.0
    m_lon = 1 / (111_320.0 * math.cos(math.radians(ORIGIN[1])))
    with BatchWriter(out, observations_schema(), batch_size=200) as writer:
        for i in range(n):
            b = i // per_building
            bx, by = (b % side) * 60.0, (b // side) * 60.0
            x, y = bx + rng.normal(0, 5), by + rng.normal(0, 5)
            lon, lat = ORIGIN[0] + x * m_lon, ORIGIN[1] + y * m_lat
            sha = f"{i:08d}" + "ab" * 28
            thumb, overlay = images[i % len(images)]
            os.link(thumb, overlays / f"{sha[:20]}_thumb.jpg")
            os.link(overlay, overlays / f"{sha[:20]}_overlay.jpg")
            x0, y0 = float(rng.uniform(0, 3024)), float(rng.uniform(0, 2016))
            is_flagged = bool(rng.random() < flagged)
            p = float(rng.uniform(0.70, 1.0)) if is_flagged else float(rng.uniform(0.0, 0.6))
            row = {
                "path": f"photos/IMG_{i:05d}.jpg",
                "file_name": f"IMG_{i:05d}.jpg",
                "sha256": sha,
                "latitude": lat,
                "longitude": lon,
                "heading": float(rng.uniform(0, 360)),
                "heading_source": "GPSImgDirection",
                "taken_at": f"2026-11-{1 + i // 400:02d}T{9 + (i // 60) % 8:02d}:{i % 60:02d}:00",
                "width": 4032,
                "height": 3024,
                "stage1_label": "crack" if is_flagged else "intact",
                "p_stage1": p,
                "p_final": p,
                "flagged": is_flagged,
                "decision": DECISION_FLAGGED if is_flagged else DECISION_NOT_FLAGGED,
                "defect_area_fraction": float(rng.uniform(0.0, 0.5)),
                "model_id": "synthetic",
                "model_version": "0.0.0",
                "threshold": 0.692,
                "inference_mode": "scene",
                "n_tiles": 48,
                "n_wall_tiles": 30,
                "n_flagged_tiles": int(is_flagged) * 3,
                "best_box_left": round(x0),
                "best_box_top": round(y0),
                "best_box_right": round(x0 + 1008),
                "best_box_bottom": round(y0 + 1008),
                "thumbnail_path": f"{overlays.name}/{sha[:20]}_thumb.jpg",
                "overlay_path": f"{overlays.name}/{sha[:20]}_overlay.jpg",
                "heatmap_path": f"{overlays.name}/{sha[:20]}_overlay.jpg",
                "status": "ok",
                "classified_at": "2026-12-07T04:00:00+00:00",
            }
            writer.add(row, Point(lon, lat))
    cfg = ClassifyConfig((out.parent,), out)
    return update_priority(out, cfg, threshold=0.692)


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size if path.exists() else 0


def time_report(survey: Path, pdf: bool) -> dict:
    """Run ``heritage report`` in a child process; wall seconds, sizes and its summary."""
    html = survey.parent / ("with_pdf" if pdf else "html_only") / "report.html"
    cmd = [
        str(Path(sys.executable).parent / "heritage"),
        "report",
        str(survey),
        "-o",
        str(html),
        "--csv",
        "--json-progress",
    ]
    if pdf:
        cmd += ["--pdf", str(html.with_suffix(".pdf"))]
    t0 = time.perf_counter()
    before = os.times()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    after = os.times()
    cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "summary": summary,
        "html_mb": _size(html) / 1e6,
        "html_with_images_mb": (_size(html) + _size(html.parent / "report_files")) / 1e6,
        "pdf_mb": _size(html.with_suffix(".pdf")) / 1e6,
    }


def write_markdown(path: Path, a: argparse.Namespace, totals: dict, runs: dict, load) -> None:
    """The results as ``docs/benchmarks-report.md``."""
    cpu = platform.processor() or "?"
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    h, p, g = runs["html"], runs["pdf"], runs["again"]
    s = p["summary"]
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Time and size of `heritage report`",
        "",
        f"Generated by `python bench/report_time.py --photos {a.photos} --flagged {a.flagged} "
        f"--overlay-px {a.overlay_px}` "
        f"(`make bench-report`) on {now}.",
        "",
        "## Survey",
        "",
        f"- {a.photos} photos, {totals['flagged_total']} flagged, on "
        f"{totals['buildings']} flagged buildings (DBSCAN clusters of photos in groups of "
        f"{a.per_building}, 60 m apart); route {totals['route_m']:.0f} m.",
        "- Built without a model (`bench/report_time.py`), as scene mode writes a survey of "
        f"12-megapixel photos: thumbnails (480 px JPEG) and whole-photo overlays "
        f"({a.overlay_px} x {a.overlay_px * 3 // 4} px JPEG) made from the demo's real photos, "
        "the strongest tile's box outlined on both; then grouped, scored and routed by "
        "`heritage.survey.pipeline.update_priority`.",
        f"- The report shows {s['photos']} photos (every photo of a flagged building, "
        f"flagged or not): {s['images']} images (each photo, and the Grad-CAM overlay of "
        "each flagged one), at most 640 px, JPEG.",
        "",
        "## Machine",
        "",
        f"- CPU: {cpu}, {os.cpu_count()} core(s) visible, shared with other users; "
        f"1-minute load average {load[0]:.1f} at the start, {load[1]:.1f} at the end.",
        f"- Python {platform.python_version()}; WeasyPrint {_version('weasyprint')}, "
        f"Jinja2 {_version('jinja2')}, Pillow {_version('pillow')}.",
        "",
        "## Results (wall clock of the command, Python start-up included)",
        "",
        "| run | wall seconds | CPU seconds | HTML + images | PDF | PDF pages |",
        "|---|---:|---:|---:|---:|---:|",
        f"| `heritage report --csv` (HTML + CSV) | {h['wall_s']:.1f} | {h['cpu_s']:.1f} | "
        f"{h['html_with_images_mb']:.1f} MB | | |",
        f"| `heritage report --csv --pdf` | {p['wall_s']:.1f} | {p['cpu_s']:.1f} | "
        f"{p['html_with_images_mb']:.1f} MB | {p['pdf_mb']:.1f} MB | {s['pdf_pages']} |",
        f"| the first command again, same output (images of the first run reused: "
        f"{g['summary']['reused_images']} of {g['summary']['images']}) | {g['wall_s']:.1f} | "
        f"{g['cpu_s']:.1f} | {g['html_with_images_mb']:.1f} MB | | |",
        "",
        "CPU seconds: user + system time of the command's process (all its threads); "
        "above the wall time when the image threads run in parallel, below it when other "
        "processes take the cores.",
        "",
        "Stages of the run with PDF (seconds, as the command reports them): "
        + ", ".join(f"{k} {v}" for k, v in s["seconds"].items())
        + f". The HTML file alone is {p['html_mb']:.2f} MB; its images are in "
        "`report_files/` beside it.",
        "",
        "## Target",
        "",
        f"- the report of a 1,000-photo survey in under a minute: HTML + CSV "
        f"{h['wall_s']:.1f} s ({'met' if h['wall_s'] < 60 else 'not met'}), with the PDF "
        f"{p['wall_s']:.1f} s ({'met' if p['wall_s'] < 60 else 'not met'}); written again "
        f"{g['wall_s']:.1f} s ({'met' if g['wall_s'] < 60 else 'not met'}).",
        "- Most of a first run is the images (stage `images`: decoding each overlay and "
        "photo, draft-decoded JPEG since overlays are JPEG (PNG overlays took about 30 ms "
        "of CPU each at 1280 px: images 10.3 s, HTML + CSV 12.6 s on 2026-12-07 13:37), "
        "then reducing it to the report's size) and WeasyPrint's layout of the PDF (stage "
        "`pdf`); both take CPU time, so they grow with the load the other users put on the "
        "2 cores. `--overlay-px 224` gives the whole-image mode's overlays for comparison.",
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")


def _version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=1000)
    ap.add_argument("--flagged", type=float, default=0.4, help="share of flagged photos")
    ap.add_argument("--per-building", type=int, default=4)
    ap.add_argument("--overlay-px", type=int, default=1280, help="longer side of the overlays")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks-report.md")
    ap.add_argument("--keep", type=Path, default=None, help="build the survey here and keep it")
    a = ap.parse_args()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="heritage-report-bench-") as tmp:
        folder = a.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        survey = folder / "survey.gpkg"
        survey.unlink(missing_ok=True)
        t0 = time.perf_counter()
        totals = make_survey(survey, a.photos, a.flagged, a.per_building, a.overlay_px)
        print(f"survey built in {time.perf_counter() - t0:.1f} s: {totals['flagged_total']} "
              f"flagged photos on {totals['buildings']} buildings", flush=True)  # fmt: skip
        runs = {"html": time_report(survey, pdf=False), "pdf": time_report(survey, pdf=True)}
        runs["again"] = time_report(survey, pdf=False)  # same place: the images are reused
    for name, r in runs.items():
        print(f"{name}: {r['wall_s']:.1f} s (CPU {r['cpu_s']:.1f} s), HTML+images "
              f"{r['html_with_images_mb']:.1f} MB, PDF {r['pdf_mb']:.1f} MB, "
              f"{r['summary']['seconds']}", flush=True)  # fmt: skip
    write_markdown(a.out, a, totals, runs, (load_before, os.getloadavg()[0]))
    print(f"written to {a.out}")


if __name__ == "__main__":
    main()
