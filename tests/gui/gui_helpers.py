"""Helpers for the app-shell tests (import as ``from gui_helpers import ...``)."""

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
