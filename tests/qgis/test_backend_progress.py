"""The backend runner names every stage and turns the stages of `heritage classify`
into one percentage that only moves forward."""

from __future__ import annotations

from helpers import StatusRecorder

STAGES = (
    "Loading the model",
    "Classifying photos",
    "Grouping photos per building",
    "Planning the inspection route",
    "Writing buildings and route",
)


def test_classify_stages_make_one_forward_percentage_with_named_states() -> None:
    from heritage_qgis import backend

    rec = StatusRecorder()
    totals = {"Classifying photos": 4}
    for stage in STAGES:
        total = totals.get(stage, 1)
        backend._handle_event({"event": "start", "stage": stage, "total": total}, rec)
        for done in range(1, total + 1):
            ev = {"event": "step", "stage": stage, "done": done, "total": total,
                  "percent": 100.0 * done / total}  # fmt: skip
            backend._handle_event(ev, rec)
    assert rec.stages == list(STAGES)
    assert rec.percents == sorted(rec.percents)  # never goes back
    assert rec.percents[0] == 0.0 and rec.percents[-1] == 100.0
    assert 0 < rec.percents[1] < 10  # the model is loaded: the bar has moved
    assert len(set(rec.percents)) >= 9
    assert "Classifying photos: 3 of 4" in rec.statuses
    assert "Planning the inspection route..." in rec.statuses
    # another command's stage covers the whole bar
    assert backend.overall_percent("Reading photos", 50.0) == 50.0


def test_stop_clock_estimates_the_batch_left_from_the_pauses() -> None:
    from heritage_qgis import backend

    clock = backend._StopClock()
    clock.saw({"event": "start", "stage": "Classifying photos"}, 0.0)
    for t in (0.01, 0.02, 5.02, 5.03):  # a 5 s pause: one batch classified
        clock.saw({"event": "step", "written": 0}, t)
    assert clock.batch_s == 5.0
    assert "about 3 s left" in clock.text(7.0)
    assert clock.text(7.0).startswith("Stopping: finishing the photos being classified")
