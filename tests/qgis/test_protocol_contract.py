"""The plugin's reader against the real backend: the JSON-lines protocol as a contract.

``heritage classify --json-progress`` (five generated photos, one of them broken, and the
tiny model that flags every photo) and ``heritage group --json-progress`` run as the
plugin runs them, through :func:`heritage_qgis.backend.run_backend` with its own line
parser, and what the plugin makes of their lines is checked: every stdout line is an
event of the protocol, each stage of ``classify`` is one the progress bar knows, the
bar only moves forward, and the summaries hold every field the plugin reads
(the lines the Processing log and the review panel's status line show). The fake
backend of ``test_plugin_algorithms.py`` tests the runner's mechanics; this tests that
the backend and the plugin still speak the same protocol.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from factories import geotagged, geotagged_folder
from helpers import StatusRecorder

pytestmark = pytest.mark.qgis

#: the events of the protocol (heritage_qgis/backend.py's docstring)
EVENTS = {"start", "step", "message", "summary", "cancelled"}
#: fields of a classify summary the plugin reads (alg_survey.py, dialog.py) and their types;
#: ``lines`` is the text a terminal shows, which the plugin shows as it is
CLASSIFY_FIELDS = {
    "classified": int, "flagged": int, "not_assessable": int, "skipped_total": int,
    "buildings": int, "route_m": float, "observations_total": int, "lines": list,
}  # fmt: skip
#: fields of a group summary the review panel reads (review.py)
GROUP_FIELDS = {"buildings": int, "route_m": float, "lines": list}


def run(args: list[str], exe: Path) -> tuple[Any, StatusRecorder, list[str]]:
    """``heritage *args`` through the plugin's runner: (its result, what the listener got,
    every line the backend wrote on stdout, as the runner's parser saw them)."""
    from heritage_qgis import backend

    stdout: list[str] = []
    parse = backend._parse

    def seen(line: str) -> dict[str, Any] | None:
        stdout.append(line)
        return parse(line)

    rec = StatusRecorder()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(backend, "_parse", seen)
        result = backend.run_backend([*args, "--json-progress"], rec, exe=str(exe))
    return result, rec, stdout


@pytest.fixture(scope="module")
def classified(backend_exe: Path, tiny_model: Path, tmp_path_factory) -> tuple:
    """A survey of 4 geotagged photos (3 near each other, one 220 m away) and a broken
    file, classified by the real backend; (gpkg, result, listener, stdout lines)."""
    tmp = tmp_path_factory.mktemp("contract")
    photos = geotagged_folder(tmp / "photos", n=3)
    geotagged(photos / "far.jpg", 43.4650, 11.8800)
    (photos / "broken.jpg").write_bytes(b"not a jpeg")
    gpkg = tmp / "out" / "survey.gpkg"
    args = ["classify", str(photos), "-o", str(gpkg), "--model", str(tiny_model)]
    return (gpkg, *run([*args, "--device", "cpu"], backend_exe))


def _check_lines(result, stdout: list[str]) -> None:
    from heritage_qgis import backend

    lines = [line for line in stdout if line.strip()]
    events = [backend._parse(line) for line in lines]
    assert lines and None not in events, [
        ln for ln, ev in zip(lines, events, strict=True) if ev is None
    ]
    assert events == result.events  # the runner kept every event, in order
    assert {ev["event"] for ev in events} <= EVENTS
    for ev in events:
        if ev["event"] == "start":
            assert isinstance(ev["stage"], str) and ev["stage"], ev
        if ev["event"] == "step":
            assert {"stage", "done", "total", "percent"} <= set(ev), ev
    assert [ev["event"] for ev in events].count("summary") == 1
    assert events[-1]["event"] == "summary"


def _check_fields(summary: dict[str, Any], fields: dict[str, type]) -> None:
    for key, kind in fields.items():
        assert key in summary, f"the plugin reads {key!r}; the backend's summary has none"
        ok = isinstance(summary[key], kind) or (kind is float and isinstance(summary[key], int))
        assert ok and not isinstance(summary[key], bool), (key, summary[key])


def test_every_stdout_line_of_classify_is_an_event_the_plugin_reads(classified) -> None:
    _gpkg, result, _rec, stdout = classified
    assert result.returncode == 0
    _check_lines(result, stdout)


def test_classify_stages_are_the_plugins_and_fill_one_forward_bar(classified) -> None:
    from heritage_qgis import backend

    _gpkg, _result, rec, _stdout = classified
    # the plugin turns the stages of classify into one bar (STAGE_SPANS): a stage it does
    # not know would cover 0-100 % again and make the bar jump back
    assert rec.stages == list(backend.STAGE_SPANS)
    assert rec.percents == sorted(rec.percents)
    assert rec.percents[-1] == 100.0
    assert "Classifying photos: 5 of 5" in rec.statuses


def test_classify_summary_holds_what_the_plugin_shows(qgis_app, classified) -> None:
    from heritage_qgis.alg_survey import summary_lines

    gpkg, result, _rec, _stdout = classified
    summary = result.summary
    _check_fields(summary, CLASSIFY_FIELDS)
    assert (summary["classified"], summary["flagged"], summary["observations_total"]) == (4, 4, 4)
    assert summary["skipped"] == {"unreadable_image": 1} and summary["skipped_total"] == 1
    assert summary["buildings"] == 2 and summary["route_m"] > 100
    # the plugin's log shows the backend's own lines, not its fallback from the counts
    assert summary["lines"] and all(isinstance(line, str) for line in summary["lines"])
    assert summary_lines(summary) == summary["lines"]
    assert summary["lines"][0].startswith(f"GeoPackage: {gpkg} (model tiny-plugin 0.0.1")
    assert "classified 4 (4 flagged" in summary["lines"][1]


def test_group_speaks_the_same_protocol_to_the_review_panel(
    qgis_app, classified, backend_exe: Path
) -> None:
    from heritage_qgis import backend
    from heritage_qgis.review import summary_text

    gpkg, *_ = classified
    result, rec, stdout = run(["group", str(gpkg)], backend_exe)
    _check_lines(result, stdout)
    assert rec.stages and set(rec.stages) <= set(backend.STAGE_SPANS)
    assert rec.percents == sorted(rec.percents)
    summary = result.summary
    _check_fields(summary, GROUP_FIELDS)
    assert summary["buildings"] == 2 and summary["lines"]
    assert summary_text(summary) == "\n".join(summary["lines"])
    assert summary["lines"][0] == (
        f"4 flagged photo(s) on 2 building(s); route {summary['route_m']:.0f} m -> {gpkg}"
    )


def test_a_failing_backend_gives_the_plugin_its_one_line_reason(
    backend_exe: Path, tmp_path: Path
) -> None:
    from heritage_qgis import backend

    missing = tmp_path / "no_photos"
    with pytest.raises(backend.BackendError) as err:
        run(["classify", str(missing), "-o", str(tmp_path / "s.gpkg")], backend_exe)
    assert err.value.returncode == 1
    assert str(err.value) == f"photo folder {missing} does not exist; give a folder of photos"
    assert "Traceback" not in err.value.stderr
