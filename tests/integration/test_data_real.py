"""Data indexing (heritage.training.data) of a real data set of ../shared/data."""

from __future__ import annotations

import csv

from heritage.training import data as D


def test_real_saltspot_uses_dedup_cluster(shared_data):
    folder = shared_data / "saltspot-salt-damage"
    with open(folder / "manifest.csv", newline="") as fh:
        clusters = {row["file"]: row["dedup_cluster"] for row in csv.DictReader(fh)}
    items = D.scan_image_folder(folder)
    assert len(items) == len(clusters)
    assert all(it.group == clusters[it.rel] for it in items)
    assert len({it.group for it in items}) < len(items)
