"""The Heritage Processing algorithms: listed, parameters checked with clear messages,
the backend runner's progress/error/cancel handling, and a real `heritage photos` run."""

from __future__ import annotations

import os
import stat
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import ROOT
from helpers import Recorder, heritage_provider

pytestmark = pytest.mark.qgis

ALGORITHMS = {
    "heritage:importphotos",
    "heritage:classifysurvey",
    "heritage:classifyraster",
    "heritage:groupbuildings",
    "heritage:planroute",
    "heritage:trainmodel",
    "heritage:inspectionreport",
    "heritage:inspectionatlas",
    "heritage:fieldpackage",
}

FAKE_BACKEND = textwrap.dedent(
    """\
    #!{python}
    import json, signal, sys, threading
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    def emit(**ev):
        print(json.dumps(ev), flush=True)
    if cmd == "--help" or "--help" in sys.argv:
        print("Usage: heritage", cmd)
    elif cmd == "ok":
        emit(event="start", stage="Working", total=4)
        for i in range(1, 5):
            emit(event="step", stage="Working", done=i, total=4, percent=25.0 * i)
        emit(event="message", text="warning: one photo was odd")
        print("not json", flush=True)
        print("INFO heritage.x: a log line", file=sys.stderr, flush=True)
        emit(event="summary", classified=4, skipped={{}})
    elif cmd == "fail":
        print("INFO heritage.x: starting", file=sys.stderr, flush=True)
        print("Error: model folder /m has no model.json: train one first", file=sys.stderr)
        sys.exit(1)
    elif cmd in ("wait", "stubborn"):
        if cmd == "stubborn":
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        emit(event="start", stage="Waiting", total=10)
        emit(event="step", stage="Waiting", done=1, total=10, percent=10.0)
        threading.Event().wait()
    """
)


@pytest.fixture
def fake_backend(tmp_path: Path) -> str:
    exe = tmp_path / "heritage"
    exe.write_text(FAKE_BACKEND.format(python=sys.executable))
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return str(exe)


@pytest.fixture
def provider(qgis_app, qgis_processing):
    with heritage_provider() as prov:
        yield prov


def _check(alg_id: str, params: dict) -> tuple[bool, str]:
    from qgis.core import QgsApplication, QgsProcessingContext, QgsProject

    alg = QgsApplication.processingRegistry().createAlgorithmById(alg_id)
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    return alg.checkParameterValues(params, context)


# ------------------------------------------------------------------ provider


def test_every_algorithm_is_listed_with_help(provider) -> None:
    from qgis.core import QgsProcessingAlgorithm

    algs = {a.id(): a for a in provider.algorithms()}
    assert set(algs) == ALGORITHMS
    for alg in algs.values():
        assert isinstance(alg, QgsProcessingAlgorithm)
        assert alg.displayName() and alg.group()
        assert len(alg.shortHelpString()) > 80
        assert alg.createInstance().name() == alg.name()


# ------------------------------------------------------------------ validation


def test_classify_survey_messages(provider, tmp_path: Path) -> None:
    ok, msg = _check(
        "heritage:classifysurvey",
        {"INPUT": str(tmp_path / "nope"), "START": "200,100", "OUTPUT": str(tmp_path / "o.shp")},
    )
    assert not ok
    assert f"Photo folder not found: {tmp_path / 'nope'}" in msg
    assert "Start point '200,100' is outside the world" in msg
    assert "must be a GeoPackage file ending in .gpkg, not 'o.shp'" in msg
    ok, msg = _check(
        "heritage:classifysurvey",
        {"INPUT": str(tmp_path), "START": "Arezzo", "OUTPUT": str(tmp_path / "o.gpkg")},
    )
    assert not ok and "Start point 'Arezzo' is not a coordinate: give it as lon,lat" in msg
    ok, msg = _check(
        "heritage:classifysurvey",
        {"INPUT": str(tmp_path), "MODEL": str(tmp_path), "OUTPUT": str(tmp_path / "o.gpkg")},
    )
    assert not ok and "has no model.json" in msg
    ok, msg = _check(
        "heritage:classifysurvey",
        {"INPUT": str(tmp_path), "OUTPUT": str(tmp_path / "missing_dir" / "o.gpkg")},
    )
    assert not ok and "does not exist" in msg


def test_start_in_another_crs_is_accepted(provider, tmp_path: Path) -> None:
    from heritage_qgis.params import parse_lon_lat

    lon, lat = parse_lon_lat("1323060.0,5383230.0 [EPSG:3857]")
    assert lon == pytest.approx(11.885, abs=1e-3) and lat == pytest.approx(43.467, abs=1e-3)


def test_other_algorithms_messages(provider, tmp_path: Path) -> None:
    ok, msg = _check(
        "heritage:importphotos", {"INPUT": str(tmp_path / "x"), "OUTPUT": str(tmp_path / "a.csv")}
    )
    assert not ok and "Photo folder not found" in msg and "not 'a.csv'" in msg
    for alg in ("heritage:groupbuildings", "heritage:planroute"):
        ok, msg = _check(alg, {"INPUT": str(tmp_path / "survey.gpkg")})
        assert not ok and "Survey GeoPackage not found" in msg, alg
    ok, msg = _check("heritage:planroute", {"INPUT": str(tmp_path / "s.gpkg"), "START": "1,2,3"})
    assert "not a coordinate" in msg
    ok, msg = _check("heritage:trainmodel", {"INPUT": str(tmp_path / "data")})
    assert not ok and "Training images not found" in msg
    ok, msg = _check(
        "heritage:classifyraster",
        {"INPUT": str(tmp_path / "ortho.tif"), "OUTPUT": str(tmp_path / "d.tif")},
    )
    assert not ok and "ortho.tif" in msg


def test_missing_backend_names_what_to_install(provider, tmp_path: Path, monkeypatch) -> None:
    from heritage_qgis import backend

    monkeypatch.setenv(backend.ENV_VAR, str(tmp_path / "no" / "heritage"))
    ok, msg = _check(
        "heritage:importphotos", {"INPUT": str(tmp_path), "OUTPUT": str(tmp_path / "p.gpkg")}
    )
    assert not ok
    assert "environment variable HERITAGE_BACKEND" in msg
    assert "Settings > Options > Heritage > Install the backend" in msg
    assert "pip install heritage-defects" in msg
    assert "plugins/.venv" not in msg  # no made-up path beside an installed plugin


def test_backend_found_from_env_and_source_tree(tmp_path: Path, monkeypatch, fake_backend) -> None:
    from heritage_qgis import backend

    monkeypatch.setenv(backend.ENV_VAR, fake_backend)
    assert backend.find_backend(setting="") == fake_backend
    monkeypatch.delenv(backend.ENV_VAR)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert backend.find_backend(setting="") == str(ROOT / ".venv" / "bin" / "heritage")


def test_missing_subcommand_is_reported(provider, monkeypatch) -> None:
    from heritage_qgis import backend

    monkeypatch.setattr(backend, "has_command", lambda name, exe=None: name != "group")
    alg = provider.algorithm("groupbuildings")
    assert "has no working `heritage group` command" in alg.check_backend()
    assert provider.algorithm("planroute").check_backend() is None


# ------------------------------------------------------------------ runner


def test_runner_maps_progress_messages_and_summary(fake_backend) -> None:
    from heritage_qgis import backend

    rec = Recorder()
    result = backend.run_backend(["ok"], rec, exe=fake_backend)
    assert result.returncode == 0
    assert rec.percents == [0.0, 25.0, 50.0, 75.0, 100.0]
    assert rec.stages == ["Working"]
    assert rec.messages == ["warning: one photo was odd"]
    assert "not json" in rec.logs and "INFO heritage.x: a log line" in rec.logs
    assert result.summary == {"classified": 4, "skipped": {}}


def test_runner_raises_the_backend_reason(fake_backend) -> None:
    from heritage_qgis import backend

    with pytest.raises(backend.BackendError) as err:
        backend.run_backend(["fail"], Recorder(), exe=fake_backend)
    assert str(err.value) == "model folder /m has no model.json: train one first"
    assert err.value.returncode == 1


def test_runner_cancel_terminates_then_kills(fake_backend) -> None:
    import time

    from heritage_qgis import backend

    t0 = time.monotonic()
    with pytest.raises(backend.BackendCancelled) as err:
        backend.run_backend(["wait"], Recorder(cancel_at=10.0), exe=fake_backend)
    assert err.value.returncode == -15  # SIGTERM
    assert time.monotonic() - t0 < 5
    t0 = time.monotonic()
    with pytest.raises(backend.BackendCancelled) as err:
        backend.run_backend(["stubborn"], Recorder(cancel_at=10.0), exe=fake_backend, grace_s=0.5)
    assert err.value.returncode == -9  # SIGKILL after the grace period
    assert time.monotonic() - t0 < 5


def test_processing_error_carries_the_reason(provider, tmp_path, fake_backend, monkeypatch):
    import processing
    from qgis.core import QgsProcessingException

    from heritage_qgis import backend

    monkeypatch.setenv(backend.ENV_VAR, fake_backend)
    alg = provider.algorithm("importphotos")
    monkeypatch.setattr(type(alg), "build_args", lambda self, p, c: ["fail"])
    with pytest.raises(QgsProcessingException, match=r"has no model\.json: train one first"):
        processing.run(
            "heritage:importphotos", {"INPUT": str(tmp_path), "OUTPUT": str(tmp_path / "p.gpkg")}
        )


# ------------------------------------------------------------------ real backend


def test_import_photos_runs_the_real_backend(provider, exif_gps: Path, tmp_path: Path) -> None:
    import processing
    from qgis.core import QgsProcessingFeedback, QgsVectorLayer

    class Feedback(QgsProcessingFeedback):
        def __init__(self) -> None:
            super().__init__()
            self.seen: list[float] = []
            self.progressChanged.connect(self.seen.append)

    feedback = Feedback()
    out = tmp_path / "photos.gpkg"
    result = processing.run(
        "heritage:importphotos", {"INPUT": str(exif_gps), "OUTPUT": str(out)}, feedback=feedback
    )
    assert result["OUTPUT"] == str(out)
    assert result["IMPORTED"] == 17 and result["SKIPPED"] == 19
    photos = QgsVectorLayer(result["PHOTOS"], "photos", "ogr")
    assert photos.isValid() and photos.featureCount() == 17
    invalid = QgsVectorLayer(result["INVALID_PHOTOS"], "invalid", "ogr")
    assert invalid.isValid() and invalid.featureCount() == 19
    assert feedback.seen and max(feedback.seen) == 100.0
    assert os.path.isfile(out)


def test_train_algorithm_offers_exactly_the_cores_backbones_and_precisions() -> None:
    # the plugin may not import the core at load time, so it repeats the lists; keep them equal
    from heritage.model.zoo import STAGE1_ARCHS
    from heritage.training.fit import PRECISIONS as CORE_PRECISIONS
    from heritage_qgis.alg_train import ARCHS, PRECISIONS

    assert ARCHS == STAGE1_ARCHS
    assert PRECISIONS == CORE_PRECISIONS


def test_survey_algorithm_offers_exactly_the_cores_cam_methods() -> None:
    # same reason; the shipped model's own method (hirescam) must be choosable by name too
    from heritage.model.explain import CAM_METHODS as CORE_METHODS
    from heritage_qgis.alg_survey import CAM_METHODS

    assert CAM_METHODS[0] == "" and len(set(CAM_METHODS)) == len(CAM_METHODS)
    assert set(CAM_METHODS[1:]) == set(CORE_METHODS)


def test_train_algorithm_passes_the_fine_tuning_recipe_for_efficientnet(
    provider, tmp_path: Path, monkeypatch
) -> None:
    from qgis.core import QgsApplication, QgsProcessingContext, QgsProject

    from heritage_qgis import backend
    from heritage_qgis.alg_train import ARCHS, PRECISIONS

    (tmp_path / "data" / "crack").mkdir(parents=True)
    alg = QgsApplication.processingRegistry().createAlgorithmById("heritage:trainmodel")
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    params = {
        "INPUT": str(tmp_path / "data"),
        "ARCH": ARCHS.index("efficientnet_lite0"),
        "EPOCHS": 3,
        "STAGE2_EPOCHS": 1,
        "OUTPUT": str(tmp_path / "model"),
    }
    args = alg.build_args(params, context)
    at = args.index("--arch")
    assert args[at + 1 : at + 4] == ["efficientnet_lite0", "--pretrained", "imagenet"]
    assert "--freeze" in args and "--stage2-pretrained" in args
    params["ARCH"] = ARCHS.index("mobilenet_v3_small")
    assert "--pretrained" not in alg.build_args(params, context)  # scratch stays scratch
    assert "--resume" not in args
    assert "--resume" in alg.build_args({**params, "RESUME": True}, context)
    at = args.index("--precision")
    assert args[at + 1] == "fp32"  # the default
    bf16 = alg.build_args({**params, "PRECISION": PRECISIONS.index("bf16")}, context)
    assert bf16[bf16.index("--precision") + 1] == "bf16"
    # a cancelled training gets time to finish its batch and write the checkpoint
    seen = {}
    monkeypatch.setattr(backend, "run_backend", lambda a, listener, grace_s: seen.update(g=grace_s))
    alg.run_backend(["train"], None)
    assert seen["g"] == alg.CANCEL_GRACE_S > backend.GRACE_S
