"""A labelled bar chart (one or several series side by side) with hover values and clicks.

Used for per-prompt logit differences (clean vs corrupted) and per-component
attributions. Horizontal bars suit long category names (``10_attn_out``): the
names then sit on the left axis, one per line, without overlapping.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QFont, QFontMetrics

from ioi_desktop.gui.widgets.colors import NEGATIVE, POSITIVE, SERIES_COLORS, configure_pyqtgraph, theme_colors
from ioi_desktop.gui.widgets.heatmap import ThemedPlot, fit_axis, set_legend_text_color, tick_labels

# The theme was chosen before pyqtgraph was imported: apply it to pyqtgraph's defaults now.
configure_pyqtgraph()


class BarChart(ThemedPlot):
    """Bars per category; ``bar_clicked(index)`` on a left click on a category."""

    bar_clicked = Signal(int)

    def __init__(self, parent=None, *, title: str = "", category_title: str = "", value_title: str = "",
                 horizontal: bool = False) -> None:
        super().__init__(parent)
        self.ci.setContentsMargins(4, 4, 4, 4)
        self._horizontal = horizontal
        self._categories: list[str] = []
        self._series: dict[str, np.ndarray] = {}
        self._items: list[pg.BarGraphItem] = []
        self._item_names: list[str] = []  # the series the bar items (and the legend) were made for
        self._category_room = 8
        self._highlighted: int | None = None
        self._value_format = "{:+.4g}"
        self.plot = self.addPlot(row=0, col=0, title=title or None)
        self.plot.setMenuEnabled(False)
        self.plot.hideButtons()
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.showGrid(x=horizontal, y=not horizontal, alpha=0.15)
        self._category_axis = "left" if horizontal else "bottom"
        self._value_axis = "bottom" if horizontal else "left"
        self.plot.setLabel(self._category_axis, category_title)
        self.plot.setLabel(self._value_axis, value_title)
        # Plain numbers: an SI prefix ("x0.001") in the axis title is easy to miss.
        self.plot.getAxis(self._value_axis).enableAutoSIPrefix(False)
        # Label the finer tick level only when its labels leave room between them: pyqtgraph's default
        # (up to 60% of the axis filled with text) ran "10 11 12 13" into one string on a narrow axis.
        self.plot.getAxis(self._value_axis).setStyle(textFillLimits=[(0, 0.8), (2, 0.4), (4, 0.3), (6, 0.2)])
        if horizontal:
            self.plot.invertY(True)
        self._zero = pg.InfiniteLine(pos=0, angle=90 if horizontal else 0, pen=pg.mkPen(width=1))
        self.plot.addItem(self._zero)
        self._highlight = pg.LinearRegionItem(orientation="horizontal" if horizontal else "vertical",
                                              movable=False, brush=pg.mkBrush(QColor(128, 128, 128, 60)),
                                              pen=pg.mkPen(None))
        self._highlight.setZValue(-10)
        self._highlight.setVisible(False)
        self.plot.addItem(self._highlight)
        # The legend sits under the plot so it never covers a bar.
        self.legend = pg.LegendItem(colCount=4, labelTextSize="8pt", frame=False)
        self.addItem(self.legend, row=1, col=0)
        self.hover_label = pg.LabelItem(justify="left", size="9pt")
        self.addItem(self.hover_label, row=2, col=0)
        self.hover_label.setText(" ")
        self.scene().sigMouseMoved.connect(self._on_mouse_moved)
        self.scene().sigMouseClicked.connect(self._on_mouse_clicked)
        self._shown_ticks: list[tuple[int, str]] = []
        # Re-thin the category labels whenever the plot area changes size.
        self.plot.vb.sigResized.connect(lambda _view: self._update_ticks())
        self._apply_theme()

    def set_bars(self, categories: Sequence[str], series: Mapping[str, np.ndarray],
                 colors: Sequence[QColor] | None = None, value_format: str = "{:+.4g}",
                 by_sign: bool = False) -> None:
        """One bar per category per series; series are drawn side by side.

        ``by_sign`` colours a single series by sign with the heatmaps' diverging
        hues (blue positive, red negative), so bars and heatmaps read alike.
        """
        self._categories = [str(c) for c in categories]
        self._series = {name: np.asarray(v, dtype=np.float32) for name, v in series.items()}
        self._value_format = value_format
        metrics = QFontMetrics(QFont())
        # Measured once per data (not on every resize): the widest category label.
        self._category_room = (metrics.height() + 2 if self._horizontal else
                               max((metrics.horizontalAdvance(c) for c in set(self._categories)), default=8) + 10)
        colors = list(colors or SERIES_COLORS)
        n_series = max(1, len(self._series))
        width = 0.8 / n_series
        positions = np.arange(len(self._categories), dtype=np.float64)
        names = list(self._series)
        # The same series as before (a new run, another prompt set): their bar items and legend are reused,
        # given the new data; cleared charts keep theirs, empty, for the next data.
        if names and names != self._item_names:
            for item in self._items:
                self.plot.removeItem(item)
            self._items = []
            self.legend.clear()
            self._item_names = names
        for i, (name, values) in enumerate(self._series.items()):
            offset = (i - (n_series - 1) / 2) * width
            color = colors[i % len(colors)]
            # One brush (not a list) keeps the legend sample coloured.
            fill = ({"brushes": [pg.mkBrush(POSITIVE if v >= 0 else NEGATIVE) for v in values], "brush": None}
                    if by_sign else {"brush": pg.mkBrush(color), "brushes": None})
            if self._horizontal:
                bars = {"x0": 0, "y": positions + offset, "height": width, "width": values}
            else:
                bars = {"x": positions + offset, "y0": 0, "width": width, "height": values}
            if i < len(self._items):
                self._items[i].setOpts(**bars, **fill)
                self._items[i].setVisible(True)
                continue
            item = pg.BarGraphItem(pen=pg.mkPen(None), **bars, **fill)
            self.plot.addItem(item)
            self._items.append(item)
            if len(self._series) > 1:
                self.legend.addItem(item, name)
        for item in self._items[len(self._series):] if self._series else self._items:
            item.setVisible(False)
        self.legend.setVisible(len(self._series) > 1)
        set_legend_text_color(self.legend, theme_colors(self)[1])
        self._update_ticks()
        n = len(self._categories)
        finite = [v[np.isfinite(v)] for v in self._series.values()]
        low = min([0.0, *[float(v.min()) for v in finite if v.size]])
        high = max([0.0, *[float(v.max()) for v in finite if v.size]])
        pad = 0.05 * (high - low or 1.0)
        if self._horizontal:
            self.plot.setYRange(-0.5, n - 0.5, padding=0)
            self.plot.setXRange(low - pad, high + pad, padding=0)
        else:
            self.plot.setXRange(-0.5, n - 0.5, padding=0)
            self.plot.setYRange(low - pad, high + pad, padding=0)
        self.set_highlighted(self._highlighted)

    def _update_ticks(self) -> None:
        """Label every k-th category, k a round step (1, 2, 5, 10, 20, 50, ...) chosen so labels never
        touch along the axis's current length (1000 prompts: every 100th or so, readable)."""
        view = self.plot.vb.boundingRect()
        length = (view.height() if self._horizontal else view.width()) if view.width() > 1 else 400.0
        room = self._category_room
        n = len(self._categories)
        step = 1
        for candidate in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000):
            step = candidate
            if n == 0 or np.ceil(n / candidate) * room <= length:
                break
        self._shown_ticks = [(i, str(label)) for i, label in enumerate(self._categories) if i % step == 0]
        axis = self.plot.getAxis(self._category_axis)
        axis.setTicks([self._shown_ticks])
        fit_axis(axis, [label for _, label in self._shown_ticks] or None)

    def shown_ticks(self) -> list[tuple[int, str]]:
        """The (index, label) category ticks drawn now."""
        return list(self._shown_ticks)

    def series(self) -> dict[str, np.ndarray]:
        """The values shown, by series name (copies)."""
        return {name: values.copy() for name, values in self._series.items()}

    def set_highlighted(self, index: int | None) -> None:
        """Shade one category's band (the selected prompt, say)."""
        self._highlighted = index
        visible = index is not None and 0 <= index < len(self._categories)
        self._highlight.setVisible(visible)
        if visible:
            self._highlight.setRegion((index - 0.5, index + 0.5))

    def category_at(self, scene_pos) -> int | None:
        if not self.plot.vb.sceneBoundingRect().contains(scene_pos):
            return None
        point = self.plot.vb.mapSceneToView(scene_pos)
        index = int(np.floor((point.y() if self._horizontal else point.x()) + 0.5))
        return index if 0 <= index < len(self._categories) else None

    def describe(self, index: int) -> str:
        parts = [f"{name}: {self._value_format.format(float(values[index]))}"
                 for name, values in self._series.items()]
        return f"{self._categories[index]} — " + ", ".join(parts)

    def _on_mouse_moved(self, scene_pos) -> None:
        index = self.category_at(scene_pos)
        text = self.describe(index) if index is not None else " "
        self.hover_label.setText(text)
        self.setToolTip("" if index is None else text)

    def _on_mouse_clicked(self, event) -> None:
        if event.button() != Qt.MouseButton.LeftButton:
            return
        index = self.category_at(event.scenePos())
        if index is not None:
            self.bar_clicked.emit(index)

    def _apply_theme(self) -> QColor:
        foreground = super()._apply_theme()
        self._zero.setPen(pg.mkPen(foreground, width=1))
        return foreground
