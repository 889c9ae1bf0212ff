"""Labelled image folders: indexing, de-duplication, grouped stratified splits, loaders.

Data directories use torchvision's ``ImageFolder`` layout (``<data_dir>/<class>/<file>``);
several are merged. Every :class:`Item` knows its dataset (folder name, or the folder
holding the ``manifest.csv`` that lists it), class, path, sha256 and group. Groups come
from the manifest's ``dedup_cluster`` or ``source_group`` column (patches or augmented
copies of one photo) and otherwise are the file itself. Exact duplicates are dropped
before splitting; the split is stratified per dataset x class and never puts one group
in two splits. ``split.csv`` in the run folder makes it reproducible.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import random
import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from heritage.io.fileio import atomic_path, atomic_write_text
from heritage.kernel.errors import DataError, InputNotFoundError
from heritage.model.preprocess import IMAGENET_MEAN, IMAGENET_STD, eval_geometry

if TYPE_CHECKING:
    import numpy as np
    import torch
    from PIL import Image

    from heritage.kernel.progress import Progress

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
#: manifest columns that group files from one source photo, most to least coarse
GROUP_COLUMNS = ("dedup_cluster", "source_group")
SPLITS = ("train", "val", "test")
SPLIT_CSV = "split.csv"
SPLIT_META = "split_meta.json"
#: the cache holds images at this multiple of the model input size
CACHE_SCALE = 1.15


@dataclass(frozen=True)
class Item:
    """One labelled image file."""

    path: Path  # absolute
    data_dir: Path  # absolute; ``rel`` is relative to it
    dataset: str
    label: str
    sha256: str
    group: str
    split: str = ""

    @property
    def rel(self) -> str:
        """Path relative to its data directory, with forward slashes."""
        return self.path.relative_to(self.data_dir).as_posix()


@dataclass(frozen=True)
class SplitSettings:
    """Everything that decides which file lands in which split."""

    data_dirs: tuple[str, ...]
    extra_positives: tuple[str, ...] = ()
    extra_positive_class: str = "crack"
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    seed: int = 0
    max_per_class: int | None = None


@dataclass(frozen=True)
class DedupReport:
    """What :func:`drop_duplicates` removed."""

    files_in: int
    duplicates_dropped: int  # extra copies of a file with the same label
    conflicts_dropped: int  # every copy of a file found under two labels


# --------------------------------------------------------------------------- indexing


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def find_manifest(data_dir: Path) -> Path | None:
    """The ``manifest.csv`` describing ``data_dir``: in it or up to two levels above."""
    for folder in (data_dir, data_dir.parent, data_dir.parent.parent):
        candidate = folder / "manifest.csv"
        if candidate.is_file():
            return candidate
    return None


def _manifest_groups(manifest: Path) -> dict[Path, str]:
    """Resolved file path -> group id from a manifest's group column (if it has one)."""
    with open(manifest, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        cols = reader.fieldnames or []
        column = next((c for c in GROUP_COLUMNS if c in cols), None)
        if column is None or "file" not in cols:
            return {}
        root = manifest.parent
        return {
            (root / row["file"]).resolve(): row[column]
            for row in reader
            if row.get("file") and row.get(column)
        }


#: Patch files cut from one photo named ``<photo>_<patch number>`` (e.g. Dais' ``a_12_7``).
_PATCH_NAME = re.compile(r"^(?P<photo>.+)_(?P<patch>\d+)$")


def patch_groups(paths: Sequence[Path]) -> dict[Path, str]:
    """Group patches by their source photo when *every* file is named ``<photo>_<n>``.

    Patches of one photo look alike, so they must not be split between training and
    test (the Dais masonry set names ``a_12_7`` the 7th patch of photo ``a_12``). When
    any file does not follow the pattern, no grouping is inferred (one group per file).
    """
    matches = [_PATCH_NAME.match(p.stem) for p in paths]
    if not paths or not all(matches):
        return {}
    return {p.resolve(): f"photo:{m['photo']}" for p, m in zip(paths, matches, strict=True) if m}


def _list_images(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
    )


def _dataset_name(data_dir: Path, manifest: Path | None) -> str:
    return manifest.parent.name if manifest is not None else data_dir.name


def scan_image_folder(
    data_dir: Path, *, force_class: str | None = None, name: str | None = None
) -> list[Item]:
    """Index one ``ImageFolder``-layout folder (sha256 computed for every file).

    With ``force_class`` every image under ``data_dir`` (any depth) gets that class and
    its own group (used for ``--extra-positives``); otherwise the first-level sub-folders
    are the classes and groups come from the manifest.
    """
    data_dir = Path(data_dir).resolve()
    if not data_dir.is_dir():
        raise InputNotFoundError(f"data folder not found: {data_dir}")
    manifest = find_manifest(data_dir)
    dataset = name or _dataset_name(data_dir, manifest)
    groups = {} if (force_class or manifest is None) else _manifest_groups(manifest)
    pairs: list[tuple[Path, str]] = []
    if force_class:
        pairs = [(p, force_class) for p in _list_images(data_dir)]
        if not groups:
            groups = patch_groups([p for p, _ in pairs])
    else:
        for cls_dir in sorted(d for d in data_dir.iterdir() if d.is_dir()):
            if cls_dir.name.startswith("."):
                continue
            pairs += [(p, cls_dir.name) for p in _list_images(cls_dir)]
    if not pairs:
        raise DataError(
            f"no images found in {data_dir}; expected the ImageFolder layout "
            f"<data_dir>/<class>/<image> with extensions {', '.join(IMAGE_EXTENSIONS)}"
        )
    with ThreadPoolExecutor(max_workers=4) as pool:
        hashes = list(pool.map(sha256_file, [p for p, _ in pairs]))
    items = []
    for (path, label), digest in zip(pairs, hashes, strict=True):
        rel = path.relative_to(data_dir).as_posix()
        group = groups.get(path.resolve(), f"file:{rel}")
        items.append(Item(path, data_dir, dataset, label, digest, group))
    if groups:
        log.info(
            "%s: %d images, %d groups from %s",
            dataset,
            len(items),
            len(set(groups.values())),
            manifest,
        )
    else:
        log.info("%s: %d images, one group per file", dataset, len(items))
    return items


def drop_duplicates(items: Sequence[Item]) -> tuple[list[Item], DedupReport]:
    """Keep one file per sha256; drop every copy of a file seen under two labels."""
    by_hash: dict[str, list[Item]] = defaultdict(list)
    for it in items:
        by_hash[it.sha256].append(it)
    kept: list[Item] = []
    dup = conflict = 0
    for copies in by_hash.values():
        if len({c.label for c in copies}) > 1:
            conflict += len(copies)
            log.warning("label conflict, dropped: %s", ", ".join(str(c.path) for c in copies))
            continue
        copies = sorted(copies, key=lambda c: (c.dataset, c.rel))
        kept.append(copies[0])
        dup += len(copies) - 1
    kept.sort(key=lambda c: (c.dataset, c.label, c.rel))
    return kept, DedupReport(len(items), dup, conflict)


def cap_per_class(items: Sequence[Item], max_per_class: int | None, seed: int) -> list[Item]:
    """At most ``max_per_class`` items per dataset x class, drawn with ``seed`` (quick runs)."""
    if not max_per_class:
        return list(items)
    rng = random.Random(seed)
    strata: dict[tuple[str, str], list[Item]] = defaultdict(list)
    for it in items:
        strata[(it.dataset, it.label)].append(it)
    out: list[Item] = []
    for key in sorted(strata):
        pool = strata[key]
        out += pool if len(pool) <= max_per_class else rng.sample(pool, max_per_class)
    out.sort(key=lambda c: (c.dataset, c.label, c.rel))
    return out


def collect_items(settings: SplitSettings) -> tuple[list[Item], DedupReport]:
    """Index, merge, de-duplicate and (optionally) cap every data folder of ``settings``."""
    items: list[Item] = []
    names: Counter[str] = Counter()

    def unique(name: str) -> str:
        names[name] += 1
        return name if names[name] == 1 else f"{name}-{names[name]}"

    for d in settings.data_dirs:
        manifest = find_manifest(Path(d).resolve())
        items += scan_image_folder(Path(d), name=unique(_dataset_name(Path(d).resolve(), manifest)))
    for d in settings.extra_positives:
        manifest = find_manifest(Path(d).resolve())
        items += scan_image_folder(
            Path(d),
            force_class=settings.extra_positive_class,
            name=unique(_dataset_name(Path(d).resolve(), manifest)),
        )
    kept, report = drop_duplicates(items)
    log.info(
        "%d images indexed, %d exact duplicates and %d label-conflicting copies dropped",
        report.files_in,
        report.duplicates_dropped,
        report.conflicts_dropped,
    )
    return cap_per_class(kept, settings.max_per_class, settings.seed), report


def class_names(items: Sequence[Item]) -> list[str]:
    """Sorted class names (the stage-1 label order)."""
    return sorted({it.label for it in items})


# --------------------------------------------------------------------------- splitting


def _take_fold(
    idx: np.ndarray, strata: np.ndarray, groups: np.ndarray, fraction: float, seed: int
) -> np.ndarray:
    """Indices (subset of ``idx``) of one stratified group fold of about ``fraction``."""
    import warnings

    import numpy as np
    from sklearn.model_selection import StratifiedGroupKFold

    if fraction <= 0 or len(idx) == 0:
        return np.array([], dtype=int)
    n_groups = len(set(groups[idx]))
    k = min(max(2, round(1.0 / fraction)), n_groups)
    if k < 2:
        raise DataError("too few groups to split; add images or lower the split fractions")
    sgkf = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "least populated class" warning
        _, fold = next(sgkf.split(idx, strata[idx], groups[idx]))
    return idx[fold]


def split_items(
    items: Sequence[Item], val_fraction: float = 0.1, test_fraction: float = 0.2, seed: int = 0
) -> list[Item]:
    """Assign ``train``/``val``/``test`` to every item.

    Stratified per dataset x class and grouped (a group never spans two splits), with
    sklearn's ``StratifiedGroupKFold``: the test split is one fold of ``round(1/test)``,
    validation one fold of the rest (``val / (1 - test)``), so 0.1/0.2 give 70/10/20.
    """
    import numpy as np

    if not 0 <= test_fraction < 1 or not 0 <= val_fraction < 1 or val_fraction + test_fraction >= 1:
        raise DataError(
            f"split fractions val={val_fraction}, test={test_fraction} must be in [0, 1) "
            "and sum to less than 1"
        )
    if not items:
        raise DataError("no images to split")
    strata = np.array([f"{it.dataset}|{it.label}" for it in items])
    groups = np.array([f"{it.dataset}|{it.group}" for it in items])
    all_idx = np.arange(len(items))
    test = _take_fold(all_idx, strata, groups, test_fraction, seed)
    rest = np.setdiff1d(all_idx, test)
    val = _take_fold(rest, strata, groups, val_fraction / (1.0 - test_fraction), seed + 1)
    split = np.full(len(items), "train", dtype=object)
    split[test] = "test"
    split[val] = "val"
    out = [replace(it, split=str(s)) for it, s in zip(items, split, strict=True)]
    _log_split(out)
    return out


def _log_split(items: Sequence[Item]) -> None:
    counts = split_counts(items)
    for stratum, per in sorted(counts.items()):
        missing = [s for s in SPLITS if not per.get(s)]
        log.info("split %s: %s", stratum, ", ".join(f"{s} {per.get(s, 0)}" for s in SPLITS))
        if missing:
            log.warning("%s has no images in %s (too few groups)", stratum, "/".join(missing))


def split_counts(items: Sequence[Item]) -> dict[str, dict[str, int]]:
    """``{"dataset/class": {"train": n, "val": n, "test": n}}``."""
    out: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(SPLITS, 0))
    for it in items:
        out[f"{it.dataset}/{it.label}"][it.split] += 1
    return {k: dict(v) for k, v in out.items()}


def split_fingerprint(items: Sequence[Item]) -> str:
    """sha256 of which file (by content) is in which split under which dataset and label.

    Unlike the bytes of ``split.csv`` it does not depend on where the data folders lie,
    so two machines that split the same files the same way agree on it.
    """
    lines = sorted(f"{it.sha256},{it.dataset},{it.label},{it.split}" for it in items)
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def dataset_fingerprint(items: Sequence[Item]) -> str:
    """sha256 of a data set's images as a model used them: the sorted lines
    ``class<TAB>path relative to the data folder<TAB>sha256 of the file``.

    It names the content, not the place: the same files give the same fingerprint on
    any machine, in any folder.
    """
    lines = sorted(f"{it.label}\t{it.rel}\t{it.sha256}" for it in items)
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def dataset_records(
    items: Sequence[Item], settings: SplitSettings, licences: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """What a model card says about each data set: ``name``, ``role`` (``data``, or
    ``extra_positives`` for a folder read with ``--extra-positives``), ``images`` used,
    ``fingerprint`` (:func:`dataset_fingerprint`) and ``licence``; no path."""
    extra = {Path(d).resolve() for d in settings.extra_positives}
    by_name: dict[str, list[Item]] = defaultdict(list)
    for it in items:
        by_name[it.dataset].append(it)
    return [
        {
            "name": name,
            "role": "extra_positives" if group[0].data_dir in extra else "data",
            "images": len(group),
            "fingerprint": dataset_fingerprint(group),
            "licence": (licences or {}).get(name, "unknown"),
        }
        for name, group in sorted(by_name.items())
    ]


#: where ``heritage prune`` (and anyone recreating a model's split) finds the data sets a
#: model card names, when no folder is given on the command line
DATA_ROOT_ENV = "HERITAGE_DATA_ROOT"


def find_datasets(
    root: Path, records: Sequence[Mapping[str, Any]], extra_hints: Sequence[str] = ()
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The folders under ``root`` of the data sets a model card names (its
    ``training.datasets``, see :func:`dataset_records`): ``(data_dirs, extra_positives)``.

    A data set is ``root/<name>``. An extra-positives one was a folder inside its data
    set (``dais-masonry/images``): ``extra_hints`` (the card's recorded
    ``--extra-positives`` paths) say which, else ``root/<name>`` itself. Raises
    :class:`DataError` naming the folder that is missing.
    """
    root = Path(root)
    if not records:
        raise DataError(
            "the model card names no data sets (training.datasets; a version-1 card): give "
            "the training data folders with --data, or the run folder with --run-dir"
        )
    data_dirs: list[str] = []
    extra: list[str] = []
    for rec in records:
        name = str(rec["name"])
        if rec.get("role") == "extra_positives":
            candidates = [root / rel for rel in _tails(name, extra_hints)] + [root / name]
        else:
            candidates = [root / name]
        found = next((c for c in candidates if c.is_dir()), None)
        if found is None:
            raise DataError(
                f"no folder {candidates[0]} for the model's data set {name!r} "
                f"({rec.get('images', '?')} images): put the data set there (the layout "
                "it was trained with, <class>/<image>), or give the data folders with --data"
            )
        (extra if rec.get("role") == "extra_positives" else data_dirs).append(str(found.resolve()))
    return tuple(data_dirs), tuple(extra)


def _tails(name: str, hints: Sequence[str]) -> list[str]:
    """The parts of recorded paths from the data set's name on (``../x/dais-masonry/images``
    -> ``dais-masonry/images``), or the name plus a recorded path's last part."""
    out = []
    for hint in hints:
        parts = Path(hint).parts
        if name in parts:
            out.append(Path(*parts[parts.index(name) :]).as_posix())
        elif parts:
            out.append(f"{name}/{parts[-1]}")
    return out


def check_datasets(items: Sequence[Item], records: Sequence[Mapping[str, Any]]) -> None:
    """Raise :class:`DataError` naming the first data set whose content (as indexed into
    ``items``) differs from the fingerprint a model card records for it."""
    by_name: dict[str, list[Item]] = defaultdict(list)
    for it in items:
        by_name[it.dataset].append(it)
    for rec in records:
        group = by_name.get(str(rec["name"]), [])
        if group and dataset_fingerprint(group) == rec.get("fingerprint"):
            continue
        where = group[0].data_dir if group else "the folders given"
        raise DataError(
            f"the data set {rec['name']!r} in {where} is not the one the model was trained "
            f"on ({len(group)} images here, {rec.get('images', '?')} recorded; its content "
            "fingerprint differs from the card's training.datasets): use the same copy of "
            "the data set"
        )


def write_split(
    items: Sequence[Item], run_dir: Path, settings: SplitSettings | None = None
) -> Path:
    """Write ``split.csv`` (and ``split_meta.json`` with the settings) into ``run_dir``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / SPLIT_CSV
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "dataset", "class", "sha256", "group", "split", "data_dir"])
        for it in items:
            w.writerow([it.rel, it.dataset, it.label, it.sha256, it.group, it.split, it.data_dir])
    if settings is not None:
        atomic_write_text(run_dir / SPLIT_META, json.dumps(asdict(settings), indent=2))
    return path


def load_split(run_dir: Path) -> list[Item]:
    """Read ``split.csv`` from a run folder (the files must still exist)."""
    path = Path(run_dir) / SPLIT_CSV
    if not path.is_file():
        raise InputNotFoundError(f"no {SPLIT_CSV} in {run_dir}; run 'heritage train' first")
    items = []
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            data_dir = Path(row["data_dir"])
            items.append(
                Item(
                    path=data_dir / row["path"],
                    data_dir=data_dir,
                    dataset=row["dataset"],
                    label=row["class"],
                    sha256=row["sha256"],
                    group=row["group"],
                    split=row["split"],
                )
            )
    missing = [it.path for it in items if not it.path.is_file()]
    if missing:
        raise DataError(
            f"{len(missing)} files of {path} are gone (first: {missing[0]}); restore them or "
            "train in a new run folder"
        )
    return items


def make_or_load_split(settings: SplitSettings, run_dir: Path) -> tuple[list[Item], dict[str, Any]]:
    """Reuse the run folder's split when made with the same settings, else make one.

    Returns the items and a summary (dedup counts, counts per split). A run folder whose
    split was made with other settings is refused, so a test split is never trained on.
    """
    meta_path = run_dir / SPLIT_META
    if (run_dir / SPLIT_CSV).is_file() and meta_path.is_file():
        old = json.loads(meta_path.read_text(encoding="utf-8"))
        old["data_dirs"] = tuple(old["data_dirs"])
        old["extra_positives"] = tuple(old.get("extra_positives", ()))
        if SplitSettings(**old) != settings:
            raise DataError(
                f"{run_dir} holds a split made with other data or settings ({meta_path}); "
                "use a new --run-dir or the same data, seed and fractions"
            )
        items = load_split(run_dir)
        log.info("reusing the split in %s (%d images)", run_dir / SPLIT_CSV, len(items))
        return items, {"reused": True, "counts": split_counts(items)}
    items, report = collect_items(settings)
    items = split_items(items, settings.val_fraction, settings.test_fraction, settings.seed)
    write_split(items, run_dir, settings)
    return items, {"reused": False, "dedup": asdict(report), "counts": split_counts(items)}


def dataset_licence(data_dir: Path) -> str | None:
    """The licence line of the ``SOURCE.md`` next to a data folder's manifest, if any."""
    manifest = find_manifest(Path(data_dir).resolve())
    folder = manifest.parent if manifest else Path(data_dir)
    source = folder / "SOURCE.md"
    if not source.is_file():
        return None
    for line in source.read_text(encoding="utf-8", errors="replace").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[0].lower() in ("licence", "license"):
            text = " ".join(cells[1:]).replace("**", "")
            return text if len(text) <= 300 else text[:297] + "..."
    return None


# --------------------------------------------------------------------------- images, torch


def open_rgb(path: Path) -> Image.Image:
    """Open an image as RGB, turned upright according to its EXIF orientation."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return ImageOps.exif_transpose(im).convert("RGB")
    except (OSError, UnidentifiedImageError) as exc:
        raise DataError(f"cannot read image {path}: {exc}") from exc


def train_transform(image_size: int, color: bool = True) -> Any:
    """Training augmentation: random crop, flips, rotation, colour jitter, normalise.

    ``color=False`` leaves colours alone (for Grad-CAM overlays, whose colours mean heat).
    """
    from torchvision import transforms as T

    steps = [
        T.RandomResizedCrop(image_size, scale=(0.6, 1.0), antialias=True),
        T.RandomHorizontalFlip(),
        T.RandomVerticalFlip(),
        T.RandomRotation(15),
    ]
    if color:
        steps.append(T.ColorJitter(0.2, 0.2, 0.2, 0.02))
    steps += [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    return T.Compose(steps)


def cache_size_for(split: str, image_size: int) -> int:
    """Edge of the cached square images of ``split``.

    Training caches at ``CACHE_SCALE`` x the input size, leaving room for random crops.
    Validation and test cache at the input size itself, so the evaluation transform's
    resize is a no-op and the model sees exactly the pixels ``heritage evaluate`` and
    ``classify`` give it (a second resize would change a few predictions).
    """
    return round(image_size * CACHE_SCALE) if split == "train" else image_size


def _available_memory() -> int | None:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


class ImageDataset:
    """A torch map-style dataset of ``(tensor, label)`` pairs.

    Args:
        paths: image files.
        labels: class indices (int) or binary targets (float) per file.
        transform: a torchvision transform taking a PIL image.
        cache_size: when given, every image is decoded once here (in the main process,
            so DataLoader workers share it copy-on-write) into one uint8 array,
            short side resized to ``cache_size`` and centre-cropped square. Skipped
            with a warning when it would take more than half the free memory.
        progress: reports the caching.
    """

    def __init__(
        self,
        paths: Sequence[Path],
        labels: Sequence[int | float],
        transform: Any,
        cache_size: int | None = None,
        progress: Progress | None = None,
    ) -> None:
        if len(paths) != len(labels):
            raise ValueError("paths and labels differ in length")
        self.paths = [Path(p) for p in paths]
        self.labels = list(labels)
        self.transform = transform
        self._cache: np.ndarray | None = None
        if cache_size and self.paths:
            self._fill_cache(cache_size, progress)

    def _fill_cache(self, size: int, progress: Progress | None) -> None:
        import numpy as np

        need = len(self.paths) * size * size * 3
        free = _available_memory()
        if free is not None and need > free // 2:
            log.warning(
                "image cache would take %.1f GB of %.1f GB free: not caching",
                need / 1e9,
                free / 1e9,
            )
            return
        cache = np.empty((len(self.paths), size, size, 3), dtype=np.uint8)
        square = eval_geometry(size)
        if progress is not None:
            progress.start("caching images", total=len(self.paths))
        for i, p in enumerate(self.paths):
            cache[i] = np.asarray(square(open_rgb(p)), dtype=np.uint8)
            if progress is not None:
                progress.step()
                if i % 64 == 0:
                    progress.check_cancelled()
        self._cache = cache

    def __len__(self) -> int:
        return len(self.paths)

    def image(self, i: int) -> Image.Image:
        """The i-th image as RGB PIL (from the cache when there is one)."""
        from PIL import Image

        if self._cache is not None:
            return Image.fromarray(self._cache[i])
        return open_rgb(self.paths[i])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int | float]:
        return self.transform(self.image(i)), self.labels[i]


def stage1_dataset(
    items: Sequence[Item],
    classes: Sequence[str],
    transform: Any,
    cache_size: int | None = None,
    progress: Progress | None = None,
) -> ImageDataset:
    """Dataset of ``items`` with the index of their class in ``classes`` as label."""
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted({it.label for it in items} - set(index))
    if unknown:
        raise DataError(f"classes {unknown} are not among the model's classes {list(classes)}")
    return ImageDataset(
        [it.path for it in items],
        [index[it.label] for it in items],
        transform,
        cache_size,
        progress,
    )


def make_loader(
    dataset: Any,
    batch_size: int,
    *,
    shuffle: bool,
    workers: int = 0,
    device: str = "cpu",
    seed: int = 0,
    indices: Sequence[int] | None = None,
) -> torch.utils.data.DataLoader:
    """A DataLoader; shuffling uses :class:`heritage.training.fit.ResumableSampler`
    (resumable epochs).

    ``indices`` (shuffled loaders only) lists the dataset indices of one epoch, repeats
    allowed: see :func:`heritage.training.train.oversample_indices`.
    """
    from torch.utils.data import DataLoader

    from heritage.training.fit import ResumableSampler

    if indices is not None and not shuffle:
        raise ValueError("indices are for the shuffled (training) loader only")
    sampler = ResumableSampler(len(dataset), seed=seed, indices=indices) if shuffle else None
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        num_workers=workers,
        pin_memory=str(device).startswith("cuda"),
        persistent_workers=workers > 0 and shuffle,  # the train loader is re-iterated most
        drop_last=False,
        worker_init_fn=ignore_sigint if workers > 0 else None,
    )


def ignore_sigint(worker_id: int) -> None:
    """DataLoader workers leave Ctrl-C to the main process.

    Without this a terminal's Ctrl-C (sent to the whole process group) kills the workers
    while the main process is still finishing its batch and writing a checkpoint
    (:mod:`heritage.kernel.interrupts`).
    """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
