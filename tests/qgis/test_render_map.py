"""The README's map: the demo survey rendered headless as the plugin shows it, in the
local UTM zone, with every building's label placed (none hidden by another)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import ROOT

pytestmark = [pytest.mark.qgis, pytest.mark.slow]


def test_demo_survey_renders_projected_with_every_building_labelled(
    qgis_app, qgis_new_project, backend_exe: Path, tiny_model: Path, tmp_path: Path
) -> None:
    from conftest import load_script
    from qgis.core import QgsProject

    gpkg = tmp_path / "demo.gpkg"
    done = subprocess.run(
        [str(backend_exe), "classify", str(ROOT / "resources" / "demo" / "photos"),
         "-o", str(gpkg), "--model", str(tiny_model), "--device", "cpu"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-1500:]
    render_map = load_script("render_map")
    out = tmp_path / "map.png"
    labels = render_map.render(gpkg, out, (1200, 800))
    assert out.stat().st_size > 20_000
    project = QgsProject.instance()
    assert project.crs().authid() == "EPSG:32632"
    group = project.layerTreeRoot().findGroup("Heritage survey: demo")
    layers = {n.layer().customProperty("heritage/layer"): n.layer() for n in group.findLayers()}
    buildings = layers["flagged_buildings"]
    in_site = [f for f in buildings.getFeatures() if f["site"] == 1]
    placed = [
        lab for lab in labels.allLabels()
        if lab.layerID == buildings.id() and not lab.isUnplaced
    ]  # fmt: skip
    assert len(in_site) >= 10
    assert len(placed) == len(in_site)  # every visit number is on the map
    route_labels = [
        lab for lab in labels.allLabels() if lab.layerID == layers["inspection_route"].id()
    ]
    assert route_labels  # leg lengths where there is room
