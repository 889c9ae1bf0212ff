"""research/probes/dais_misses.py: the description of which Dais crack patches are missed."""

from __future__ import annotations

from conftest import load_script


def _row(name: str, p: float, label: str) -> dict[str, str]:
    return {"path": f"/x/crack/{name}", "p_final": str(p), "decision": str(int(p >= 0.5)),
            "stage1_label": label, "correct": str(int(p >= 0.5))}  # fmt: skip


def test_report_counts_per_bin_and_photo_and_lists_misses_surest_first():
    dm = load_script("research/probes/dais_misses")
    test = {n: _row(n, p, lab) for n, p, lab in [
        ("a.png", 0.9, "crack"), ("b.png", 0.2, "healthy"), ("c.png", 0.01, "no_crack"),
    ]}  # fmt: skip
    val = {"d.png": _row("d.png", 0.99, "crack")}
    fraction = {"a.png": 0.05, "b.png": 0.015, "c.png": 0.004, "d.png": 0.03}
    photo = {"a.png": "photo:p1", "b.png": "photo:p1", "c.png": "photo:p2", "d.png": "photo:p3"}
    other = {"c.png": _row("c.png", 0.7, "crack"), "b.png": _row("b.png", 0.1, "healthy")}
    lines = dm.report({"val": val, "test": test}, fraction, photo, {"B": other})
    text = "\n".join(lines)
    assert "| val | 1 | 1 | 1.000 |" in lines
    assert "| test | 3 | 1 | 0.333 |" in lines
    # bins < 1 %, 1-2 %, 2-4 %, >= 4 %
    assert "| test | 0/1 | 0/1 | 0/0 | 1/1 |" in lines
    assert "| val | 0/0 | 0/0 | 1/1 | 0/0 |" in lines
    assert "p1 1/2, p2 0/1" in text
    misses = [ln for ln in lines if ln.startswith("| c.png") or ln.startswith("| b.png")]
    assert misses == [
        "| c.png | p2 | 0.010 | no_crack | 0.4% | found |",
        "| b.png | p1 | 0.200 | healthy | 1.5% | missed |",
    ]
    assert "a.png" not in text.split("surest first")[1]
