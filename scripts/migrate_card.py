"""Rewrite a version-1 model card (``heritage-model-card/1``) in schema 2, in place.

Schema 2 holds what inference reads as typed fields (``cam_target``, ``pruning`` and
``scene`` at the top; version 1 kept the first two in ``training``) and no machine paths.
heritage reads version-1 cards as they are; this rewrites one so that the file says the
same without the paths of the machine that trained it:

- ``training.data_dirs`` / ``extra_positives`` / ``licences`` become ``training.datasets``:
  each data set by name, role, images used and content fingerprint
  (:func:`heritage.training.data.dataset_fingerprint`), with its licence. The
  fingerprints are computed from ``--data`` / ``--extra-positives`` (the folders the model
  was trained on), split again with the card's seed and fractions: the rewrite stops
  unless the split's counts per data set and class equal the card's, so the fingerprints
  are those of the training data. ``training.split.fingerprint`` is recorded too.
- ``training.run_dir`` is dropped (``heritage prune`` takes ``--run-dir`` or ``--data``),
  the torch version loses its build tag (``2.14.1+cu130`` -> ``2.14.1``), any other
  absolute path is cut to its last part.

The weights are not touched (their sha256 stay), nor the metrics, the version or any
setting; ``notes`` says that the card was rewritten. Used once for the shipped model:

    .venv/bin/python scripts/migrate_card.py models/heritage-default \\
        --data ../shared/data/brickwork-cracks ../shared/data/sdnet2018-walls \\
               ../shared/data/ozgenel-concrete-crack ../shared/data/saltspot-salt-damage \\
        --extra-positives ../shared/data/dais-masonry/images
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from heritage.model.card import CARD_FILE, CARD_FORMAT, CARD_FORMAT_V1, ModelCard
from heritage.model.provenance import release_version, without_machine_paths
from heritage.training import data as D

NOTE = (
    "Card rewritten in schema {fmt} (typed cam_target and pruning; data sets by name and "
    "content fingerprint, no machine paths, torch without its build tag): the networks, "
    "weights, settings and figures of {version} are unchanged."
)


def dataset_section(training: dict, data: list[str], extra: list[str]) -> dict:
    """``datasets`` and ``split.fingerprint`` from the training folders, after checking that
    they split exactly as the card's ``split.counts`` say."""
    config = training.get("config") or {}
    settings = D.SplitSettings(
        data_dirs=tuple(data),
        extra_positives=tuple(extra),
        extra_positive_class=config.get("extra_positive_class", "crack"),
        val_fraction=float(config.get("val_fraction", 0.1)),
        test_fraction=float(config.get("test_fraction", 0.2)),
        seed=int(config.get("seed", 0)),
        max_per_class=config.get("max_per_class"),
    )
    items, _ = D.collect_items(settings)
    items = D.split_items(items, settings.val_fraction, settings.test_fraction, settings.seed)
    counts = D.split_counts(items)
    recorded = (training.get("split") or {}).get("counts")
    if counts != recorded:
        raise SystemExit(
            "the folders do not split as the card says (training.split.counts): give the "
            f"data folders the model was trained on\n got {json.dumps(counts, sort_keys=True)}"
        )
    licences = training.get("licences") or {}
    return {
        "datasets": D.dataset_records(items, settings, licences),
        "split": {**training["split"], "fingerprint": D.split_fingerprint(items)},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path, help="model folder whose model.json is rewritten")
    ap.add_argument("--data", nargs="+", required=True, help="the training data folders")
    ap.add_argument("--extra-positives", nargs="*", default=[], help="--extra-positives folders")
    a = ap.parse_args()
    path = a.model / CARD_FILE
    raw = json.loads(path.read_text(encoding="utf-8"))
    if raw.get("format", CARD_FORMAT_V1) != CARD_FORMAT_V1:
        print(f"{path} is not a version-1 card ({raw.get('format')}); nothing to do")
        return 0
    card = ModelCard.from_dict(raw)  # moves cam_target and pruning to their fields
    section = dataset_section(card.training, a.data, a.extra_positives)
    dropped = ("data_dirs", "extra_positives", "licences", "run_dir")
    rest = {k: v for k, v in card.training.items() if k not in dropped}
    training = {"datasets": section["datasets"], **rest, "split": section["split"]}
    if "torch" in training:
        training["torch"] = release_version(training["torch"])
    note = NOTE.format(fmt=CARD_FORMAT, version=card.version)
    out = ModelCard(
        **{
            **card.__dict__,
            "training": without_machine_paths(training),
            "metrics": without_machine_paths(card.metrics),
            "notes": f"{card.notes} {note}".strip(),
        }
    )
    path.write_text(out.to_json(), encoding="utf-8")
    print(f"{path}: rewritten in {CARD_FORMAT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
