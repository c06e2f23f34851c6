"""Circuit discovery in the real window on the bundled model: run it, resize the circuit, click through, save and reopen.

The worker thread runs the analysis as it runs every analysis; the Circuit panel
is then driven with real key presses and mouse clicks.
"""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt

from ioi_desktop.core.prompts import PromptPair, PromptSet
from tests.support.gui_helpers import (RUN_TIMEOUT_MS, open_session_and_wait, panels_drawn, save_screenshot,
                                       save_session_and_wait)


@pytest.fixture(scope="module")
def bundled_handle():
    import torch

    from ioi_desktop.core.models import ModelSpec, load_model

    torch.set_num_threads(1)
    return load_model(ModelSpec(source="bundled", device="cpu"))


@pytest.fixture
def bundled_window(qtbot, window, bundled_handle):
    """The window with the notebook set and the bundled model, delivered as the worker delivers one."""
    window.start(load_model=False)
    window.worker.model_loaded.emit(bundled_handle)
    qtbot.waitUntil(lambda: window.prompt_editor.valid, timeout=5000)
    return window


def _circuit_panel(window):
    panel = next(p for p in window.panels if p.TITLE == "Circuit")
    window.docks["Circuit"].show()
    window.docks["Circuit"].raise_()
    return panel


def _view_point(panel, x, y):
    """The graph view's widget coordinates of the view point (x, y)."""
    scene = panel.graph_view.getPlotItem().vb.mapViewToScene(QPointF(x, y))
    return panel.graph_view.mapFromScene(scene)


def _run_circuit(qtbot, window, **changes):
    assert window.run_only("circuit", changes), window.step_label.text()
    # The panels on screen draw (and are cleared at a run's start) one per event-loop turn.
    qtbot.waitUntil(lambda: not window.worker.busy and panels_drawn(), timeout=RUN_TIMEOUT_MS)


def test_discover_resize_click_and_reopen_the_circuit(qtbot, bundled_window, tmp_path, settings):
    window = bundled_window
    _run_circuit(qtbot, window, methods=["eap", "eap_ig"])
    result = window.results["circuit"]
    assert result.n_edges == 479 and list(result.method_labels) == ["eap", "eap_ig"]
    panel = _circuit_panel(window)
    qtbot.waitUntil(lambda: panel.drawn is not None, timeout=5000)

    # The panel draws the run's circuit: the same edges as the result's circuit_edges.
    assert panel.size_spin.value() == result.chosen_size
    drawn = set(zip(panel.drawn.senders.tolist(), panel.drawn.receivers.tolist()))
    assert drawn == set(zip(*[a.tolist() for a in np.nonzero(result.circuit_edges)]))
    assert panel.drawn.kept == result.chosen_edges
    assert [item.name() for item in panel.curve_items] == [
        f"{m}: CPR {result.cpr[m]:.2f}, CMD {result.cmd[m]:.2f}" for m in ("eap", "eap_ig")]
    save_screenshot(window, "circuit_window")

    # Moving the slider (keyboard, as a user does) redraws a bigger circuit and moves the curve marker.
    before = panel.drawn.kept
    panel.size_slider.setFocus()
    qtbot.keyClick(panel.size_slider, Qt.Key.Key_PageUp)
    qtbot.keyClick(panel.size_slider, Qt.Key.Key_PageUp)
    moved = panel.size_slider.value()
    assert moved == result.chosen_size + 2 * panel.size_slider.pageStep()
    assert panel.size_spin.value() == moved and panel.drawn.requested == moved
    assert panel.drawn.kept >= before
    assert panel.size_marker.value() == pytest.approx(np.log10(100.0 * moved / 479))
    assert f"top {moved} of 479" in panel.status.text()

    # Clicking a head node selects it everywhere: the attention viewer shows that head.
    attention = next(p for p in window.panels if "attention" in p.analyses())
    x, y = panel.node_position("a3.h3")
    qtbot.mouseClick(panel.graph_view.viewport(), Qt.MouseButton.LeftButton, pos=_view_point(panel, x, y))
    assert (window.selection.layer, window.selection.head) == (3, 3)
    assert attention.shown_head()[1:] == (3, 3)
    assert panel.selected_ring.points()[0].pos().x() == pytest.approx(x)
    # Ctrl-click pins a head (the shared pinned set).
    x0, y0 = panel.node_position("a0.h0")
    qtbot.mouseClick(panel.graph_view.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ControlModifier,
                     _view_point(panel, x0, y0))
    assert window.selection.pinned == ((0, 0),)
    assert (window.selection.layer, window.selection.head) == (3, 3)
    assert [(p.pos().x(), p.pos().y()) for p in panel.pinned_ring.points()] == [(x0, y0)]
    # A head selected elsewhere is ringed here.
    window.selection.select_head(2, 1)
    ring = panel.selected_ring.points()[0].pos()
    assert (ring.x(), ring.y()) == panel.node_position("a2.h1")

    # Hovering an edge names it and gives its score.
    start, end = panel.drawn.segments[0]
    middle = _view_point(panel, *((start + end) / 2))
    qtbot.mouseMove(panel.graph_view.viewport(), middle)
    qtbot.waitUntil(lambda: panel.drawn.names[0] in panel.edge_label.text(), timeout=3000)
    save_screenshot(panel, "circuit_panel")

    # The session keeps the result and the chosen size and method.
    panel.method_combo.setCurrentIndex(1)
    assert panel.drawn.requested == moved
    path = tmp_path / "circuit.ioisession"
    assert save_session_and_wait(qtbot, window, path)
    from ioi_desktop.gui.main_window import MainWindow

    other = MainWindow(settings=settings)
    qtbot.addWidget(other)
    other.show()
    assert open_session_and_wait(qtbot, other, path)
    for name in ("circuit_scores", "circuit_edges", "curve_faithfulness"):
        np.testing.assert_array_equal(other.results.array(name), window.results.array(name))
    assert other.results["circuit"].cpr == result.cpr
    reopened = _circuit_panel(other)
    qtbot.waitUntil(lambda: reopened.drawn is not None, timeout=5000)
    assert reopened.size_spin.value() == moved and reopened.method_combo.currentText() == "eap_ig"
    assert reopened.drawn.names == panel.drawn.names
    other.close()


def _pairs(*pairs):
    return PromptSet(tuple(PromptPair(clean, corrupt, correct, incorrect) for clean, corrupt, correct, incorrect in pairs))


MARY_JOHN = "When Mary and John went to the store, John gave a drink to"


def test_misaligned_prompts_are_one_sentence(qtbot, bundled_window, monkeypatch):
    """The corrupted prompt is one token longer: edges (and patching) have no aligned positions."""
    window = bundled_window
    shown = []
    monkeypatch.setattr(window, "show_message",
                        lambda title, message, hint="", details="": shown.append((message, hint, details)))
    window.set_prompt_set(_pairs((MARY_JOHN, MARY_JOHN.replace("the store, John", "the big store, Mary"),
                                  " Mary", " John")))
    qtbot.waitUntil(lambda: not window.prompt_editor.checking, timeout=5000)
    # The editor's check finds it before any run: the circuit run is refused with that one sentence.
    assert not window.prompt_editor.valid
    assert not window.run_only("circuit", {})
    reason = window.step_label.text()
    assert "tokens but the corrupted one is" in reason and "\n" not in reason
    assert not window.worker.busy and (window.results is None or "circuit" not in window.results.analyses)


def test_no_clean_corrupt_gap_is_one_sentence_in_the_panel_and_the_run_goes_on(qtbot, bundled_window, monkeypatch):
    """Corrupted = clean: m(full) = m(empty), so faithfulness cannot be normalised."""
    window = bundled_window
    shown = []
    monkeypatch.setattr(window, "show_message",
                        lambda title, message, hint="", details="": shown.append((message, hint, details)))
    window.set_prompt_set(_pairs((MARY_JOHN, MARY_JOHN, " Mary", " John")))
    qtbot.waitUntil(lambda: window.prompt_editor.valid, timeout=5000)
    for name, action in window.analysis_actions.items():
        action.setChecked(name in ("logit_diff", "circuit"))
    assert window.run(), window.run_blocked_reason()
    qtbot.waitUntil(lambda: not window.worker.busy, timeout=RUN_TIMEOUT_MS)
    assert not shown  # no failure box: the logit difference still ran
    assert window.results.analyses == ["logit_diff", "circuit"]
    circuit = window.results["circuit"]
    expected = "so faithfulness cannot be normalised"
    assert expected in circuit.problem and circuit.circuit_scores is None and not circuit.arrays
    panel = _circuit_panel(window)
    qtbot.waitUntil(lambda: expected in panel.status.text(), timeout=5000)
    assert panel.status.text().startswith("No circuit for these prompts:") and "\n" not in panel.status.text()
    assert panel.figures() == [] and not panel.size_slider.isEnabled()


def test_exact_scoring_above_the_limit_is_refused_with_the_estimate(qtbot, bundled_window):
    window = bundled_window
    _run_circuit(qtbot, window, methods=["exact"], exact_limit=100)
    problem = window.results["circuit"].problem
    assert "479 forward passes" in problem and "eap" in problem
    panel = _circuit_panel(window)
    qtbot.waitUntil(lambda: "479 forward passes" in panel.status.text(), timeout=5000)
