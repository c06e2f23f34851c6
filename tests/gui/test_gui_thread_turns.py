"""Issue 17's latency budget, as structure: big changes are spread over event-loop turns and reuse
what is drawn (the timings are in benchmarks/gui_latency.py).

A turn is counted by a repeating zero-interval QTimer: it fires once per pass of the event loop, so
two things recorded with the same count happened in the same turn.
"""

from __future__ import annotations

from PySide6.QtCore import QTimer

from tests.support.gui_helpers import panels_drawn, run_and_wait


class TurnCounter:
    """How many event-loop passes have run since it started."""

    def __init__(self) -> None:
        self.count = 0
        self.timer = QTimer()
        self.timer.setInterval(0)
        self.timer.timeout.connect(self.tick)
        self.timer.start()

    def tick(self) -> None:
        self.count += 1

    def stop(self) -> None:
        self.timer.stop()


def panels_of(window) -> dict:
    return {panel.TITLE: panel for panel in window.panels}


def test_a_run_clears_the_panels_on_screen_one_per_turn(qtbot, loaded_window):
    window = loaded_window
    window.docks["Overview"].raise_()
    run_and_wait(qtbot, window)
    on_screen = [panel for panel in window.panels if panel.on_screen()]
    assert len(on_screen) >= 2, "the test needs two panels on screen (the Overview and the attention viewer)"
    turns = TurnCounter()
    cleared: list[tuple[str, int]] = []
    for panel in on_screen:
        original = panel.clear_views
        panel.clear_views = lambda p=panel, original=original: (cleared.append((p.TITLE, turns.count)), original())
    # Cancelled right away: the test is about the run's start, not its results.
    assert window.run(), window.run_blocked_reason()
    assert cleared == [], "the run's start cleared panels on screen before returning to the event loop"
    qtbot.waitUntil(lambda: len(cleared) >= len(on_screen), timeout=10_000)
    window.cancel()
    qtbot.waitUntil(lambda: not window.worker.busy and panels_drawn(), timeout=120_000)
    turns.stop()
    first = {}
    for title, turn in cleared:
        first.setdefault(title, turn)
    assert set(first) == {panel.TITLE for panel in on_screen}
    assert len(set(first.values())) == len(first), f"two panels were cleared in the same turn: {cleared}"


def test_opening_a_session_restores_the_dock_layout_only_when_it_differs(qtbot, loaded_window, tmp_path):
    from tests.support.gui_helpers import open_session_and_wait, save_session_and_wait

    window = loaded_window
    run_and_wait(qtbot, window)
    same = tmp_path / "same.ioisession"
    assert save_session_and_wait(qtbot, window, same)
    restored = []
    original = window.restoreState
    window.restoreState = lambda state, version=0: (restored.append(bytes(state)), original(state, version))[1]
    assert open_session_and_wait(qtbot, window, same)
    assert restored == [], "the session's docks are those on screen, yet the whole layout was restored"

    # A session saved with another layout brings it back.
    window.docks["Patching"].hide()
    other = tmp_path / "other.ioisession"
    assert save_session_and_wait(qtbot, window, other)
    window.docks["Patching"].show()
    assert open_session_and_wait(qtbot, window, other)
    assert len(restored) == 1 and window.docks["Patching"].isHidden()

