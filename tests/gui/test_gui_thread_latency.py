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


def test_export_writes_the_same_files_without_blocking(qtbot, loaded_window, tmp_path):
    window = loaded_window
    run_and_wait(qtbot, window)
    at_once = window.export_all(tmp_path / "at_once", dpi=60)
    assert at_once, "the synchronous export wrote nothing"

    finished = []
    window.export_finished.connect(finished.append)
    turns = []
    window.worker.preparing_changed.connect(lambda preparing: turns.append(preparing))
    assert window.start_export(tmp_path / "stepwise", dpi=60)
    assert not finished, "start_export returned only after writing everything"
    assert not window.start_export(tmp_path / "again"), "a second export started while one runs"
    qtbot.waitUntil(lambda: bool(finished), timeout=120_000)
    stepwise = finished[0]
    assert True in turns, "no step ran in the worker's input thread"

    def relative(paths, root):
        return [str(path.relative_to(root)) for path in paths]

    assert relative(stepwise, tmp_path / "stepwise") == relative(at_once, tmp_path / "at_once")
    for path in at_once:
        twin = tmp_path / "stepwise" / path.relative_to(tmp_path / "at_once")
        assert twin.stat().st_size > 0
        if path.suffix in (".csv", ".svg") and path.name != "results.json":
            assert twin.read_bytes() == path.read_bytes(), path.name


def test_four_head_maps_where_three_fit_go_two_by_two(qtbot):
    # Path patching's four grids used to show 3 + 1 at 1920x1080, a lone plot on the second line.
    from ioi_desktop.gui.panels.result_panel import MIN_HEAD_MAP_WIDTH, HeadMapRow
    from ioi_desktop.gui.widgets.heatmap import Heatmap

    row = HeadMapRow()
    qtbot.addWidget(row)
    for _ in range(4):
        row.add(Heatmap())
    row.reflow(3 * MIN_HEAD_MAP_WIDTH + 10)
    assert row.columns() == 2
    row.reflow(4 * MIN_HEAD_MAP_WIDTH + 10)
    assert row.columns() == 4
    row.reflow(2 * MIN_HEAD_MAP_WIDTH + 10)
    assert row.columns() == 2


def test_a_click_redraws_only_the_panels_on_screen_and_the_others_catch_up_when_raised(qtbot, loaded_window):
    window = loaded_window
    run_and_wait(qtbot, window)
    window.docks["Overview"].raise_()
    patching = panels_of(window)["Patching"]
    patching.ensure_drawn()
    qtbot.waitUntil(lambda: not patching.on_screen(), timeout=5000)
    outlined = []
    original = patching.update_selection
    patching.update_selection = lambda selection, changed: (outlined.append(changed), original(selection, changed))
    window.selection.select_head(1, 2)
    assert outlined == [] and patching.needs_drawing, "a panel behind another tab redrew its selection"
    window.docks["Patching"].raise_()
    qtbot.waitUntil(lambda: bool(outlined), timeout=5000)
    assert {"layer", "head"} <= outlined[0] and not patching.needs_drawing
