"""Keep pyqtgraph plots inside their widgets: no axis, title or colour bar cut off at an edge.

A pyqtgraph view (``PlotWidget``, ``GraphicsLayoutWidget``) reports a tiny
minimum size to Qt, so a splitter or layout can make it narrower than the
plot drawn in it; the plot then keeps its own minimum and is clipped at the
right edge (an x axis cut at 1.0, a colour bar missing). Two remedies:

* :func:`span_title` lets a plot's title span the whole plot (axes and colour
  bar included), not only the data column, so a long title no longer adds
  the axes' widths to the plot's minimum width;
* :class:`FittedPlotWidget` is a ``PlotWidget`` whose ``minimumSizeHint`` is its
  plot's own minimum, which splitters and layouts honour.
"""

from __future__ import annotations

import math

import pyqtgraph as pg
from PySide6.QtCore import QSize, Qt


def span_title(plot: pg.PlotItem) -> None:
    """Let ``plot``'s title span every column of its layout (call after adding a colour bar)."""
    layout = plot.layout
    layout.removeItem(plot.titleLabel)
    layout.addItem(plot.titleLabel, 0, 0, 1, max(3, layout.columnCount()))


def plot_minimum(item) -> QSize:
    """The minimum size (whole pixels, rounded up) a graphics layout item needs."""
    size = item.effectiveSizeHint(Qt.SizeHint.MinimumSize)
    return QSize(math.ceil(size.width()), math.ceil(size.height()))


class FittedPlotWidget(pg.PlotWidget):
    """A PlotWidget that never gets narrower (or shorter) than the plot it shows, and whose title
    spans the plot (see :func:`span_title`)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        span_title(self.getPlotItem())

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt override
        frame = 2 * self.frameWidth()
        need = plot_minimum(self.getPlotItem())
        return QSize(need.width() + frame, need.height() + frame)
