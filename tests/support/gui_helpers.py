"""Helpers for the app-shell tests: running and waiting, screenshots of widgets."""

from __future__ import annotations

from pathlib import Path

SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
RUN_TIMEOUT_MS = 120_000


def save_screenshot(widget, name: str) -> Path:
    """Save ``widget.grab()`` as artifacts/screenshots/app_<name>.png; checks it is not blank."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"app_{name}.png"
    image = widget.grab().toImage()
    assert image.width() > 100 and image.height() > 100, f"{name}: screenshot is {image.width()}x{image.height()}"
    # Non-blank: more than one colour among a grid of sampled pixels.
    colours = {image.pixel(x, y) for x in range(0, image.width(), 37) for y in range(0, image.height(), 37)}
    assert len(colours) > 3, f"{name}: the screenshot looks blank"
    assert image.save(str(path))
    return path


def panels_drawn() -> bool:
    """True when no panel on screen waits for its turn to draw (they draw one per event-loop turn)."""
    from ioi_desktop.gui.panels.result_panel import DRAW_QUEUE

    return not DRAW_QUEUE.pending()


def run_and_wait(qtbot, window):
    """Run and wait until the worker is idle again and the panels on screen have drawn; fails with the
    app's own message if the run did."""
    assert window.run(), window.run_blocked_reason()
    qtbot.waitUntil(lambda: not window.worker.busy and panels_drawn(), timeout=RUN_TIMEOUT_MS)
    assert window.results is not None, window.step_label.text()
    return window.results


SESSION_TIMEOUT_MS = 60_000


def save_session_and_wait(qtbot, window, path) -> bool:
    """Save a session (written in the worker's input thread) and wait; True when it was written."""
    outcome = []
    window.session_saved.connect(lambda _path: outcome.append(True))
    window.session_save_failed.connect(lambda _message: outcome.append(False))
    if not window.save_session_to(path):
        return False
    qtbot.waitUntil(lambda: bool(outcome), timeout=SESSION_TIMEOUT_MS)
    return outcome[0]


def open_session_and_wait(qtbot, window, path) -> bool:
    """Open a session (read in the worker's input thread) and wait; True when it was restored."""
    outcome = []
    window.session_opened.connect(lambda _path: outcome.append(True))
    window.session_open_failed.connect(lambda _message: outcome.append(False))
    if not window.open_session(path):
        return False
    qtbot.waitUntil(lambda: bool(outcome) and panels_drawn(), timeout=SESSION_TIMEOUT_MS)
    return outcome[0]
