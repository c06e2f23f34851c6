"""Pin heads by Ctrl-click, ablate them, path-patch from/into the selected head, click through; sessions keep it all."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, Qt
from PySide6.QtWidgets import QApplication

from tests.support.gui_helpers import (
    RUN_TIMEOUT_MS,
    open_session_and_wait,
    panels_drawn,
    run_and_wait,
    save_screenshot,
    save_session_and_wait,
)


def _panel(window, title):
    panel = next(p for p in window.panels if p.TITLE == title)
    dock = window.docks[title]
    dock.show()
    dock.raise_()
    panel.ensure_drawn()  # what raising its tab does on the next event-loop turn
    return panel


def _click(qtbot, heatmap, row, col, modifier=Qt.KeyboardModifier.NoModifier):
    scene = heatmap.plot.vb.mapViewToScene(QPointF(col, row))
    qtbot.mouseClick(heatmap.viewport(), Qt.LeftButton, modifier, heatmap.mapFromScene(scene))


def _wait_idle(qtbot, window):
    # The worker idle and the panels on screen drawn (they draw one per event-loop turn: on a loaded
    # machine the path-patching grid still showed the streamed rows when only the worker was waited for).
    qtbot.waitUntil(lambda: not window.worker.busy and panels_drawn(), timeout=RUN_TIMEOUT_MS)


def test_pin_ablate_path_patch_click_and_session_round_trip(qtbot, loaded_window, tmp_path, settings):
    window = loaded_window
    run_and_wait(qtbot, window)
    patching = _panel(window, "Patching")
    patching.grid_combo.setCurrentIndex(patching.grid_combo.findData("head_z"))
    qtbot.wait(50)
    _click(qtbot, patching.exact, 1, 3, Qt.KeyboardModifier.ControlModifier)
    _click(qtbot, patching.exact, 0, 2, Qt.KeyboardModifier.ControlModifier)
    assert window.selection.pinned == ((1, 3), (0, 2))
    ablation_panel = _panel(window, "Ablation")
    assert ablation_panel.chips.texts() == ["L1H3 ×", "L0H2 ×"]
    # The attention viewer shows the same shared set side by side.
    viewer = next(p for p in window.panels if "attention" in p.analyses())
    assert viewer.pinned_heads() == [(1, 3), (0, 2)]
    assert viewer.pinned_maps[0].isVisibleTo(viewer) and viewer.pinned_maps[1].isVisibleTo(viewer)
    # Ctrl-click again unpins; a plain click selects without pinning.
    _click(qtbot, patching.exact, 0, 2, Qt.KeyboardModifier.ControlModifier)
    _click(qtbot, patching.exact, 0, 1)
    assert window.selection.pinned == ((1, 3),) and (window.selection.layer, window.selection.head) == (0, 1)
    window.selection.toggle_pin(0, 2)

    qtbot.wait(50)
    qtbot.mouseClick(ablation_panel.ablate_button, Qt.LeftButton)
    _wait_idle(qtbot, window)
    ablated = window.results["ablation"]
    assert ablated.meta["heads"] == [[1, 3], [0, 2]]
    assert "logit_diff" in window.results.analyses and "patching" in window.results.analyses  # others kept
    np.testing.assert_array_equal(ablation_panel.heatmaps["ablation_dla_head_before"].values(),
                                  ablated.ablation_dla_head_before)
    np.testing.assert_array_equal(ablation_panel.heatmaps["ablation_dla_head_after"].values(),
                                  ablated.ablation_dla_head_after)
    assert "L1H3" in ablation_panel.status.text() and "→" in ablation_panel.status.text()
    qtbot.wait(50)
    save_screenshot(ablation_panel, "panel_ablation")

    path_panel = _panel(window, "Path patching")
    window.selection.select_head(1, 1)
    qtbot.mouseClick(path_panel.into_button, Qt.LeftButton)
    _wait_idle(qtbot, window)
    reverse = window.results["path_patching"]
    assert reverse.meta["question"] == "reverse" and reverse.meta["receiver_head"] == [1, 1]
    np.testing.assert_array_equal(path_panel.heatmaps["path_patch_v"].values(), reverse.path_patch_v)
    assert "ablation" in window.results.analyses
    qtbot.wait(50)
    attention = next(p for p in window.panels if "attention" in p.analyses())
    _click(qtbot, path_panel.heatmaps["path_patch_v"], 0, 2)
    assert (window.selection.layer, window.selection.head) == (0, 2)
    assert attention.shown_head()[1:] == (0, 2)
    save_screenshot(path_panel, "panel_path_patching_reverse")

    qtbot.mouseClick(path_panel.from_button, Qt.LeftButton)
    _wait_idle(qtbot, window)
    forward = window.results["path_patching"]
    assert forward.meta["question"] == "forward" and forward.meta["senders"] == [[0, 2]]
    np.testing.assert_array_equal(path_panel.heatmaps["path_patch_q"].values(), forward.path_patch_q)
    qtbot.wait(50)
    save_screenshot(path_panel, "panel_path_patching_forward")
    save_screenshot(window, "window_path_patching")

    path = tmp_path / "pinned.ioisession"
    assert save_session_and_wait(qtbot, window, path)
    from ioi_desktop.gui.main_window import MainWindow

    other = MainWindow(settings=settings)
    qtbot.addWidget(other)
    assert open_session_and_wait(qtbot, other, path)
    assert other.selection.pinned == ((1, 3), (0, 2))
    for name in ("ablation_dla_head_after", "path_patch_q", "path_patch_logits_raw"):
        np.testing.assert_array_equal(other.results.array(name), window.results.array(name))
    other_chips = next(p for p in other.panels if p.TITLE == "Ablation").chips
    assert other_chips.texts() == ["L1H3 ×", "L0H2 ×"]
    qtbot.mouseClick(other_chips.clear_button, Qt.LeftButton)
    assert other.selection.pinned == ()
    other.close()


def test_a_bad_head_set_is_one_message(qtbot, loaded_window, monkeypatch):
    window = loaded_window
    shown = []
    monkeypatch.setattr(window, "show_message", lambda title, message, hint="", details="": shown.append(message))
    window.selection.set_pinned([(1, 3)])
    assert window.run_only("ablation", {"heads": "7.7"})
    qtbot.waitUntil(lambda: not window.worker.busy, timeout=RUN_TIMEOUT_MS)
    qtbot.waitUntil(lambda: bool(shown), timeout=5000)
    assert "outside this model" in shown[0] and "\n" not in shown[0]


def test_toolbar_actions_ablate_the_pinned_set_and_path_patch_from_the_selected_head(qtbot, loaded_window):
    window = loaded_window
    window.selection.set_pinned([(1, 0)])
    window.actions_by_name["ablate_pinned"].trigger()
    _wait_idle(qtbot, window)
    assert window.results["ablation"].meta["heads"] == [[1, 0]]
    window.selection.select_head(0, 3)
    window.actions_by_name["path_patch_selected"].trigger()
    _wait_idle(qtbot, window)
    assert window.results["path_patching"].meta["senders"] == [[0, 3]]
    assert window.results["ablation"].meta["heads"] == [[1, 0]]


def test_live_ablation_follows_the_pinned_set(qtbot, loaded_window):
    window = loaded_window
    panel = _panel(window, "Ablation")
    from ioi_desktop.gui.worker import RUN

    jobs = []
    window.worker.job_started.connect(jobs.append)
    panel.live_check.setChecked(True)
    window.selection.set_pinned([(0, 1)])
    window.selection.toggle_pin(1, 2)  # two quick changes: one debounced run of the final set
    def ablated():
        results = window.results
        return None if results is None or "ablation" not in results.analyses else results["ablation"].meta["heads"]

    qtbot.waitUntil(lambda: ablated() == [[0, 1], [1, 2]], timeout=RUN_TIMEOUT_MS)
    _wait_idle(qtbot, window)
    assert jobs.count(RUN) == 1
    window.selection.toggle_pin(0, 1)
    qtbot.waitUntil(lambda: ablated() == [[1, 2]], timeout=RUN_TIMEOUT_MS)
    _wait_idle(qtbot, window)
    panel.live_check.setChecked(False)


def test_head_map_context_menu_pins_ablates_and_path_patches(qtbot, loaded_window):
    window = loaded_window
    run_and_wait(qtbot, window)
    attribution = _panel(window, "Attribution")
    shown = []
    attribution.heads.cell_menu_requested.connect(lambda layer, head, where: shown.append((layer, head)))
    qtbot.wait(50)
    scene = attribution.heads.plot.vb.mapViewToScene(QPointF(2, 1))
    qtbot.mouseClick(attribution.heads.viewport(), Qt.RightButton, Qt.KeyboardModifier.NoModifier,
                     attribution.heads.mapFromScene(scene))
    assert shown == [(1, 2)]
    qtbot.keyClick(QApplication.activePopupWidget() or window, Qt.Key_Escape)

    def trigger(layer, head, starts):
        menu = attribution.head_menu(layer, head)
        action = next(a for a in menu.actions() if a.text().startswith(starts))
        action.trigger()
        menu.deleteLater()

    trigger(1, 2, "Pin L1H2")
    assert window.selection.pinned == ((1, 2),)
    assert any(a.text() == "Unpin L1H2" for a in attribution.head_menu(1, 2).actions())
    trigger(0, 0, "Ablate the pinned heads (1)")
    _wait_idle(qtbot, window)
    assert window.results["ablation"].meta["heads"] == [[1, 2]]
    trigger(1, 2, "Path patch into L1H2")
    _wait_idle(qtbot, window)
    assert window.results["path_patching"].meta["receiver_head"] == [1, 2]
    assert "dla" in window.results.analyses  # the other results stay
