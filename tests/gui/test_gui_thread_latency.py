"""Issue 17's latency budget, as behaviour: panels behind another tab draw only when raised; export
writes the same files without blocking the GUI thread (the timings are in benchmarks/gui_latency.py).

Each test drives the real window and worker on the tiny model (see tests/support/gui_fixtures.py).
"""

from __future__ import annotations

from tests.support.gui_helpers import run_and_wait


def panels_of(window) -> dict:
    return {panel.TITLE: panel for panel in window.panels}


def test_a_panel_behind_another_tab_draws_only_when_its_tab_is_raised(qtbot, loaded_window):
    window = loaded_window
    window.docks["Overview"].raise_()
    scores = panels_of(window)["Head scores"]
    qtbot.waitUntil(lambda: not scores.on_screen(), timeout=5000)
    drawn = []
    original = scores.render_results
    scores.render_results = lambda: (drawn.append(True), original())
    run_and_wait(qtbot, window)
    assert scores.results is not None and scores.needs_drawing, "the panel holds the results, not drawn"
    assert drawn == [], "a panel behind another tab was drawn when the run ended"
    assert all(heatmap.values().size == 0 for heatmap in scores.heatmaps.values())

    window.docks["Head scores"].raise_()  # what clicking its tab does
    qtbot.waitUntil(lambda: bool(drawn), timeout=5000)
    assert scores.on_screen() and drawn == [True] and not scores.needs_drawing
    values = window.results.array("head_score_prev")
    assert scores.heatmaps["head_score_prev"].values().shape == values.shape


def test_the_panel_on_screen_draws_when_the_run_ends(qtbot, loaded_window):
    window = loaded_window
    window.docks["Overview"].raise_()
    overview = panels_of(window)["Overview"]
    qtbot.waitUntil(overview.on_screen, timeout=5000)
    run_and_wait(qtbot, window)
    qtbot.waitUntil(lambda: not overview.needs_drawing, timeout=5000)
    assert overview.results is not None and overview.figures(), "the Overview shows the run"
