"""Colour maps and theme colours shared by the plotting widgets.

Signed scores (logit differences, attributions, patching effects) use a
diverging red-white-blue map with levels symmetric around 0, so white always
means "no effect" and the sign is read from the hue; this is plotly's ``RdBu``,
the map TransformerLens's demo uses (negative red, positive blue).
Probabilities and attention weights use the sequential ``viridis`` map from 0.

The two colour maps are pyqtgraph objects, built on first use: the token strip
and the prompt editor take their role colours from here while the window is
still starting, and importing pyqtgraph then would delay the window by a second.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QWidget

# ColorBrewer RdBu, from strongly negative (red) through white to strongly positive (blue).
_RDBU = [
    (103, 0, 31), (178, 24, 43), (214, 96, 77), (244, 165, 130), (253, 219, 199),
    (247, 247, 247),
    (209, 229, 240), (146, 197, 222), (67, 147, 195), (33, 102, 172), (5, 48, 97),
]

POSITIVE = QColor(*_RDBU[9])
NEGATIVE = QColor(*_RDBU[1])

# Colours for named token positions (token strips) and for series in bar charts;
# picked to stay distinct for colour-blind readers (Okabe-Ito).
ROLE_COLORS = {
    "IO": QColor(0, 158, 115),
    "S1": QColor(230, 159, 0),
    "S2": QColor(213, 94, 0),
    "END": QColor(204, 121, 167),
    "S1+1": QColor(150, 130, 0),
    "punct": QColor(153, 153, 153),
}
OTHER_ROLE_COLOR = QColor(86, 180, 233)
SERIES_COLORS = [QColor(0, 114, 178), QColor(213, 94, 0), QColor(0, 158, 115), QColor(204, 121, 167)]

# Known-head-role markers: (symbol, fill colour), assigned to roles in legend order.
ROLE_MARKERS = [
    ("star", QColor(255, 215, 0)),
    ("t", QColor(0, 200, 120)),
    ("o", QColor(255, 105, 180)),
    ("s", QColor(0, 190, 255)),
    ("d", QColor(255, 140, 0)),
    ("t1", QColor(170, 120, 255)),
    ("p", QColor(160, 220, 60)),
    ("h", QColor(255, 80, 80)),
    ("x", QColor(230, 230, 230)),
]


@cache
def _colour_maps() -> dict[str, Any]:
    import pyqtgraph as pg

    return {
        "DIVERGING": pg.ColorMap(np.linspace(0.0, 1.0, len(_RDBU)), [QColor(*c) for c in _RDBU], name="RdBu"),
        "SEQUENTIAL": pg.colormap.get("viridis"),
    }


def configure_pyqtgraph(dark: bool | None = None) -> None:
    """pyqtgraph's global plot colours and antialiasing for the light or dark theme.

    ``dark=None`` reads the theme the application chose (``gui.app.apply_theme``
    stores it as the ``ioi_dark_theme`` property). The plotting widgets call
    this when their module is first imported, so the app can set its theme
    without importing pyqtgraph while the window is starting.
    """
    import pyqtgraph as pg
    from PySide6.QtCore import QCoreApplication

    if dark is None:
        app = QCoreApplication.instance()
        dark = bool(app.property("ioi_dark_theme")) if app is not None else False
    pg.setConfigOptions(
        background=(30, 30, 32) if dark else "w",
        foreground=(225, 225, 225) if dark else (40, 40, 40),
        antialias=True,
    )


def __getattr__(name: str) -> Any:
    """``DIVERGING`` (RdBu) and ``SEQUENTIAL`` (viridis), pyqtgraph ColorMaps made on first access."""
    if name in ("DIVERGING", "SEQUENTIAL"):
        return _colour_maps()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def symmetric_levels(values: np.ndarray) -> tuple[float, float]:
    """(-m, m) with m the largest finite |value|, so 0 sits at the map's white centre."""
    finite = values[np.isfinite(values)]
    peak = float(np.abs(finite).max()) if finite.size else 0.0
    peak = peak if peak > 0 else 1.0
    return -peak, peak


def sequential_levels(values: np.ndarray, upper: float | None = None) -> tuple[float, float]:
    """(0, upper) where upper defaults to the largest finite value."""
    if upper is None:
        finite = values[np.isfinite(values)]
        upper = float(finite.max()) if finite.size else 1.0
    return 0.0, upper if upper > 0 else 1.0


def text_color_on(background: QColor) -> QColor:
    """Black or white, whichever reads better on ``background`` (relative luminance)."""
    luminance = 0.2126 * background.redF() + 0.7152 * background.greenF() + 0.0722 * background.blueF()
    return QColor(0, 0, 0) if luminance > 0.5 else QColor(255, 255, 255)


def theme_colors(widget: QWidget) -> tuple[QColor, QColor]:
    """(background, foreground) of the widget's palette, so plots follow light/dark themes."""
    palette = widget.palette()
    return palette.color(QPalette.ColorRole.Base), palette.color(QPalette.ColorRole.Text)
