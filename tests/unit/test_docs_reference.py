"""The user documentation's reference pages name every field and value the code writes.

docs/reference/geopackage.md must list every column of each survey layer,
docs/reference/invalid-photos.md every skip reason, docs/reference/model-card.md every
field of the model card; and every page of docs/ is in the site's navigation
(mkdocs.yml). Text only: no MkDocs needed (``make docs`` builds the site itself).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from heritage.kernel.records import SkipReason
from heritage.model.card import ModelCard, PruningRecord, StageCard
from heritage.model.scene import SceneSettings
from heritage.survey.buildings import BUILDING_COLUMNS
from heritage.survey.classify import CLASSIFICATION_FAILED
from heritage.survey.photos import INVALID_FIELDS, PHOTO_FIELDS
from heritage.survey.pipeline import OBSERVATION_FIELDS
from heritage.survey.route import LEG_COLUMNS
from heritage.survey.sites import SITE_LEG_COLUMNS

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
REFERENCE = DOCS / "reference"


def _section(text: str, heading: str) -> str:
    """The text under ``heading`` (a ``## `` or ``### `` line) up to the next ``## ``."""
    match = re.search(rf"^#+ {re.escape(heading)}\s*$(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"no section {heading!r}"
    return match.group(1)


def _named(text: str) -> set[str]:
    """Every name written as code (`name`) in ``text``."""
    return set(re.findall(r"`([^`\s]+)`", text))


GEOPACKAGE_LAYERS = {
    "observations": [f.name for f in OBSERVATION_FIELDS],
    "flagged_buildings": [*BUILDING_COLUMNS, "visit_order", *SITE_LEG_COLUMNS[:1]],
    "inspection_route": [*LEG_COLUMNS, *SITE_LEG_COLUMNS],
    "invalid_photos": [f.name for f in INVALID_FIELDS],
}


@pytest.mark.parametrize("layer", sorted(GEOPACKAGE_LAYERS))
def test_geopackage_page_lists_every_field_of_each_layer(layer: str) -> None:
    text = (REFERENCE / "geopackage.md").read_text(encoding="utf-8")
    missing = [f for f in GEOPACKAGE_LAYERS[layer] if f not in _named(_section(text, layer))]
    assert not missing, f"docs/reference/geopackage.md, section {layer}: {missing} not described"


def test_geopackage_page_lists_the_photo_fields() -> None:
    text = (REFERENCE / "geopackage.md").read_text(encoding="utf-8")
    section = _section(text, "observations")
    missing = [f.name for f in PHOTO_FIELDS if f.name not in _named(section)]
    assert not missing


def test_invalid_photos_page_explains_every_reason() -> None:
    text = (REFERENCE / "invalid-photos.md").read_text(encoding="utf-8")
    reasons = [r.value for r in SkipReason] + [CLASSIFICATION_FAILED]
    rows = {m.group(1) for m in re.finditer(r"^\| `([a-z_]+)` \|", text, re.M)}
    assert rows == set(reasons), f"documented {sorted(rows)} but the code has {sorted(reasons)}"


def test_model_card_page_lists_every_card_field() -> None:
    text = (REFERENCE / "model-card.md").read_text(encoding="utf-8")
    card = [f.name for f in dataclasses.fields(ModelCard)] + ["format"]
    stage = [f.name for f in dataclasses.fields(StageCard)]
    scene = [f.name for f in dataclasses.fields(SceneSettings)]
    pruning = [f.name for f in dataclasses.fields(PruningRecord)]
    sections = ("Fields", card), ("stage1 and stage2", stage), ("scene", scene)
    for heading, names in (*sections, ("pruning", pruning)):
        missing = [n for n in names if n not in _named(_section(text, heading))]
        assert not missing, f"docs/reference/model-card.md, {heading}: {missing} not described"


def test_every_page_is_in_the_navigation() -> None:
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8").split("\nnav:", 1)[1]
    listed = set(re.findall(r":\s*(\S+\.md)\s*$", nav, re.M))
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    assert pages == listed, f"not in the nav: {pages - listed}; not a page: {listed - pages}"
