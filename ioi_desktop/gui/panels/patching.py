"""Activation patching: which activations carry the answer from the clean run.

Each cell is the normalized patching score of one activation, patched from
the clean run into the corrupted run: (patched - corrupted) / (clean -
corrupted) of the mean logit difference, so 0 = no effect and 1 = the clean
behaviour fully restored. Grids are the residual stream, attention and MLP
outputs by (layer, position), and each head's output z, value v, pattern,
query q and key k by (layer, head).

Attribution patching estimates the same grids linearly (clean - corrupted)
x gradient; the panel shows the exact grid, the estimate, or both with the
error between them (estimate - exact), exact and estimate on one shared
symmetric colour scale. The scatter is the demo's value-vs-pattern plot: one
point per head, coloured by layer; clicking a point selects that head.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QScrollArea,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from ioi_desktop.core.analyses import patching, attribution_patching
from ioi_desktop.core.grids import strongest_cell
from ioi_desktop.core.selection import Selection
from ioi_desktop.gui.panels.result_panel import ResultPanel, axis_position_labels
from ioi_desktop.gui.widgets.colors import SEQUENTIAL, symmetric_levels, theme_colors
from ioi_desktop.gui.widgets.compact_label import CompactLabel
from ioi_desktop.gui.widgets.export import export_grid_csv
from ioi_desktop.gui.widgets.heatmap import Heatmap
from ioi_desktop.gui.widgets.plot_fit import FittedPlotWidget

# The grids come from core's one sweep catalogue: arrays "patch_<key>" (exact), "atp_<key>" (estimate).
_KIND_OF_AXES = {"layer_pos": "position", "layer_head": "head", "layer_kv_head": "head", "layer_pos_head": "head_by_pos"}
_KIND = {key: _KIND_OF_AXES[sweep.grid_kind] for key, sweep in patching.SWEEPS.items()}
_TITLE = {key: sweep.title for key, sweep in patching.SWEEPS.items()}
_MIN_PEAK = 0.1
MODES = ("Exact", "Attribution estimate", "Exact, estimate and error")


# Below this width the value-vs-pattern scatter moves under the heatmaps.
NARROW_WIDTH = 620
# Side by side, each grid needs about this width for its axes, cells and colour bar; below it they stack.
GRID_MIN_WIDTH = 330
GRID_MIN_WIDTH_HEADS = 250

class PatchingPanel(ResultPanel):
    TITLE = "Patching"
    RESULTS = (patching.Result, attribution_patching.Result)
    STREAMED = tuple(f"{prefix}_{key}" for key in patching.SWEEPS for prefix in ("patch", "atp"))
    # Exact, estimate and error side by side share one roles legend below them.
    INLINE_ROLE_LEGEND = False

    def __init__(self, selection, parent: QWidget | None = None) -> None:
        super().__init__(selection, parent)
        layout = QVBoxLayout(self)
        controls = QHBoxLayout()
        controls.addWidget(QLabel("Activation:"))
        self.grid_combo = QComboBox()
        # As wide as its longest name: a truncated "Residual stream (resid_pr" hides which activation it is.
        self.grid_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.grid_combo.setToolTip("Which activation was patched from the clean into the corrupted run")
        controls.addWidget(self.grid_combo)
        controls.addStretch(1)
        layout.addLayout(controls)
        # The mode on a second row: both combos at full width do not fit beside each other at 800 px.
        controls = QHBoxLayout()
        controls.addWidget(QLabel("Show:"))
        self.mode_combo = QComboBox()
        self.mode_combo.addItems(MODES)
        self.mode_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.mode_combo.setToolTip("Exact activation patching, the attribution-patching estimate, or both "
                                   "with the error (estimate - exact)")
        controls.addWidget(self.mode_combo)
        controls.addStretch(1)
        controls.addWidget(self.roles_checkbox)
        layout.addLayout(controls)
        self.status = CompactLabel("Run activation patching to see which activations restore the clean answer.")
        layout.addWidget(self.status)
        # Next to the normalised scores: a warning when the clean-corrupted gap they divide by is tiny.
        self.gap_label = QLabel("")
        self.gap_label.setObjectName("gap_warning")
        self.gap_label.setWordWrap(True)
        self.gap_label.setStyleSheet("QLabel#gap_warning { color: #8a4b00; font-weight: bold; }")
        self.gap_label.hide()
        layout.addWidget(self.gap_label)

        self.splitter = splitter = QSplitter(Qt.Orientation.Horizontal)
        self.grid_area = QWidget()
        self._grids_layout = grids = QGridLayout(self.grid_area)
        grids.setContentsMargins(0, 0, 0, 0)
        self._stacked = False
        self.exact = Heatmap(title="Exact patching")
        self.estimate = Heatmap(title="Attribution estimate")
        self.error = Heatmap(title="Estimate − exact")
        for heatmap in (self.exact, self.estimate, self.error):
            heatmap.setMinimumSize(180, 200)
            heatmap.cell_clicked.connect(self._on_cell_clicked)
            heatmap.cell_ctrl_clicked.connect(self._on_cell_ctrl_clicked)
            heatmap.cell_menu_requested.connect(self._on_cell_menu)
        for column, heatmap in enumerate((self.exact, self.estimate, self.error)):
            grids.addWidget(heatmap, 0, column)
        # When the grids stack (a narrow dock), they scroll rather than squeeze.
        self.grid_scroll = QScrollArea()
        self.grid_scroll.setWidgetResizable(True)
        self.grid_scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        self.grid_scroll.setWidget(self.grid_area)
        splitter.addWidget(self.grid_scroll)

        # Never narrower than its plot: the splitter gives the grids what is left (no axis cut at 1.0).
        self.scatter_view = FittedPlotWidget(title="Value vs pattern patching")
        self.scatter_view.setToolTip("One point per head: its value-patching score against its pattern-patching "
                                     "score, coloured by layer. Click a point to select the head.")
        self.scatter_view.setMenuEnabled(False)
        self.scatter_view.hideButtons()
        for side, label in (("bottom", "pattern patching score"), ("left", "value patching score")):
            self.scatter_view.setLabel(side, label)
            # Scores are fractions of the clean effect; an SI prefix (x0.001) would only confuse.
            self.scatter_view.getAxis(side).enableAutoSIPrefix(False)
        self.scatter_view.showGrid(x=True, y=True, alpha=0.2)
        self.scatter = pg.ScatterPlotItem(size=9, hoverable=True, tip=self._point_tip,
                                          hoverPen=pg.mkPen(width=2))
        self.scatter.sigClicked.connect(self._on_point_clicked)
        # Room around the points for the head names written next to them.
        self.scatter_view.getViewBox().setDefaultPadding(0.12)
        self.scatter_view.getViewBox().sigResized.connect(lambda _view: self._refit_scatter())
        self.scatter_view.addItem(self.scatter)
        self.scatter_selected = pg.ScatterPlotItem(size=18, brush=pg.mkBrush(None),
                                                   pen=pg.mkPen(QColor(220, 20, 60), width=3))
        self.scatter_view.addItem(self.scatter_selected)
        self._scatter_labels: list[pg.TextItem] = []
        self._scatter_values: np.ndarray | None = None
        self._chosen_grid: str | None = None
        splitter.addWidget(self.scatter_view)
        splitter.setSizes([700, 320])
        layout.addWidget(splitter, 1)
        layout.addWidget(self.roles_legend)
        self.apply_theme()

        self.grid_combo.currentIndexChanged.connect(self._on_grid_changed)
        self.mode_combo.currentIndexChanged.connect(self._on_grid_changed)

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        # In a narrow dock the scatter goes below the heatmaps instead of squeezing them
        # to nothing; it returns beside them when there is room.
        vertical = self.width() < NARROW_WIDTH
        orientation = Qt.Orientation.Vertical if vertical else Qt.Orientation.Horizontal
        if self.splitter.orientation() != orientation:
            self.splitter.setOrientation(orientation)
            total = self.splitter.height() if vertical else self.splitter.width()
            self.splitter.setSizes([int(total * 0.6), total - int(total * 0.6)] if vertical
                                   else [int(total * 0.7), total - int(total * 0.7)])
        super().resizeEvent(event)
        self._arrange_grids()

    def shown_maps(self) -> list[Heatmap]:
        return [m for m in (self.exact, self.estimate, self.error) if not m.isHidden()]

    def grids_stacked(self) -> bool:
        """True when the shown grids sit one under another (too narrow for side by side)."""
        return self._stacked

    def _arrange_grids(self) -> None:
        """Side by side when each shown grid gets GRID_MIN_WIDTH, else stacked (and scrolling)."""
        shown = self.shown_maps()
        # The grids get the whole width when the scatter is hidden or below them, else the splitter's first pane.
        beside = not self.scatter_view.isHidden() and self.splitter.orientation() == Qt.Orientation.Horizontal
        width = self.splitter.sizes()[0] if beside and self.splitter.sizes()[0] > 0 else self.width() - 24
        # What each plot's own layout needs (title, axes, colour bar), and room for the cells: layer x head
        # grids (a few columns) need less than layer x position grids.
        floor = GRID_MIN_WIDTH if _KIND.get(self._grid_key()) != "head" else GRID_MIN_WIDTH_HEADS
        need = max([floor] + [int(m.ci.effectiveSizeHint(Qt.SizeHint.MinimumSize).width()) + 24 for m in shown])
        stacked = len(shown) > 1 and width < need * len(shown)
        layout = self._grids_layout
        for heatmap in (self.exact, self.estimate, self.error):
            layout.removeWidget(heatmap)
        for index, heatmap in enumerate((self.exact, self.estimate, self.error)):
            layout.addWidget(heatmap, index if stacked else 0, 0 if stacked else index)
            # Side by side, low enough for a laptop's short tab dock (at 200 px the position labels were
            # scrolled out of view); stacked, each grid scrolls into view.
            heatmap.setMinimumSize(180, 260 if stacked else 130)
        self._stacked = stacked

    # ---------------------------------------------------------------- data
    def _grid_key(self) -> str | None:
        return self.grid_combo.currentData()

    def _arrays(self, key: str) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(exact, estimate) of a grid: rows streamed by a run in progress, else finished results."""
        found = []
        for prefix in ("patch", "atp"):
            name = f"{prefix}_{key}"
            # Streamed rows are newer than any results shown (show_results forgets them).
            array = self._partial.get(name)
            if array is None and self.results is not None:
                array = self.results.array(name)
            found.append(array)
        return found[0], found[1]

    def attention_layers(self) -> list[int] | None:
        """A hybrid's attention layers, one per grid row (None: every layer, row = layer)."""
        for kind in (patching.Result, attribution_patching.Result):
            result = None if self.results is None else self.results.result(kind)
            if result is not None:
                layers = result.attention_layers
                return [int(layer) for layer in layers] if layers else None
        return None

    def _layer(self, row: int) -> int:
        """The model layer a grid row shows (a hybrid's rows are its attention layers)."""
        layers = self.attention_layers()
        return layers[row] if layers and 0 <= row < len(layers) else row

    def _available(self) -> list[str]:
        return [key for key in patching.SWEEPS if any(a is not None for a in self._arrays(key))]

    def _refresh_combo(self, preferred: str | None = None) -> None:
        """List the grids there are; show the user's choice, else resid_pre (the notebook's first grid),
        else ``preferred``."""
        current = self._grid_key()
        keys = self._available()
        self.grid_combo.blockSignals(True)
        self.grid_combo.clear()
        for key in keys:
            self.grid_combo.addItem(_TITLE[key], key)
        for choice in (self._chosen_grid, "resid_pre", preferred, current):
            if choice in keys:
                self.grid_combo.setCurrentIndex(keys.index(choice))
                break
        self.grid_combo.blockSignals(False)

    def render_results(self) -> None:
        self._refresh_combo()
        self._draw_grid()
        self._draw_scatter()

    def render_rows(self, array_name: str, grid: np.ndarray) -> None:
        # Unless the user picked a grid, show the one filling in now.
        self._refresh_combo(preferred=array_name.split("_", 1)[1])
        self._draw_grid()
        if array_name in ("patch_head_v", "patch_head_pattern"):
            self._draw_scatter()

    def clear_views(self) -> None:
        self.grid_combo.clear()
        for heatmap in (self.exact, self.estimate, self.error):
            heatmap.clear_data()
            heatmap.setVisible(True)
        self.scatter.clear()
        self.scatter_selected.clear()
        self._clear_scatter_labels()
        self._scatter_values = None
        self.status.setText("Run activation patching to see which activations restore the clean answer.")
        self.gap_label.hide()

    def _slice(self, key: str, array: np.ndarray | None) -> np.ndarray | None:
        """The 2-D grid shown for an array; head z by position shows the selected head."""
        if array is None or _KIND[key] != "head_by_pos":
            return array
        head = self.selection.head if self.selection.head is not None else 0
        return array[:, :, min(head, array.shape[2] - 1)]

    def _axis_labels(self, key: str, array: np.ndarray) -> tuple[list[str], list[str]]:
        layers = self.attention_layers()
        rows = [str(i) for i in (layers if layers and len(layers) == array.shape[0] else range(array.shape[0]))]
        if _KIND[key] == "head":
            return rows, [str(i) for i in range(array.shape[1])]
        positions = None
        for prefix in ("patch", "atp"):
            positions = self.results.positions(f"{prefix}_{key}", 1) if self.results is not None else None
            if positions is not None:
                break
        view = self.view()
        tokens = view.tokens(0) if view is not None else []
        return rows, axis_position_labels(positions, tokens, array.shape[1])

    def _draw_grid(self) -> None:
        key = self._grid_key()
        if key is None:
            for heatmap in (self.exact, self.estimate, self.error):
                heatmap.clear_data()
            return
        exact, estimate = (self._slice(key, a) for a in self._arrays(key))
        kind = _KIND[key]
        col_title = "head" if kind == "head" else "position"
        mode = self.mode_combo.currentIndex()
        show_exact = exact is not None and mode in (0, 2)
        show_estimate = estimate is not None and mode in (1, 2)
        show_error = exact is not None and estimate is not None and mode == 2
        if not (show_exact or show_estimate):
            # The chosen mode has nothing for this grid: show whichever exists.
            show_exact, show_estimate = exact is not None, exact is None
        both = [a for a, shown in ((exact, show_exact), (estimate, show_estimate)) if shown]
        levels = self._levels(np.concatenate([a.ravel() for a in both]))
        head_suffix = f" — head {self.selection.head or 0}" if kind == "head_by_pos" else ""
        for heatmap, values, shown, name in (
            (self.exact, exact, show_exact, "Exact patching"),
            (self.estimate, estimate, show_estimate, "Attribution estimate"),
            (self.error, attribution_patching.error_grid(exact, estimate) if show_error else None, show_error,
             "Estimate − exact"),
        ):
            heatmap.setVisible(shown)
            if not shown:
                continue
            rows, cols = self._axis_labels(key, values)
            heatmap.set_titles(f"{name}{head_suffix}", "layer", col_title)
            heatmap.set_data(values, rows, cols, signed=True,
                             levels=self._levels(values) if heatmap is self.error else levels)
            if kind == "head":
                heatmap.set_hover_text(lambda l, h, v, m=heatmap: self.describe_head(m, l, h, v))
            else:
                heatmap.set_hover_text(None)
        shown_maps = [m for m, s in ((self.exact, show_exact), (self.estimate, show_estimate),
                                     (self.error, show_error)) if s]
        # Three grids and the scatter do not fit side by side; the scatter returns in the other modes.
        self.scatter_view.setVisible(self._scatter_values is not None and not show_error)
        self._arrange_grids()
        self._head_maps = shown_maps if kind == "head" else []
        self._position_maps = shown_maps if kind != "head" else []
        for heatmap in (self.exact, self.estimate, self.error):
            self.set_head_map_layers(heatmap, self.attention_layers())  # a hybrid: rows are its attention layers
        self._update_roles_overlay()
        self.update_selection(self.selection.current, frozenset())
        # The header describes the grid shown: the estimate in "Attribution estimate" mode.
        if show_exact:
            self._update_status(key, exact, "Exact patching")
        else:
            self._update_status(key, estimate, "Attribution estimate")
        warning = self.gap_warning(f"patch_{key}" if show_exact else f"atp_{key}")
        self.gap_label.setText(warning)
        self.gap_label.setVisible(bool(warning))

    @staticmethod
    def _levels(values: np.ndarray) -> tuple[float, float]:
        """Symmetric levels, never narrower than ±0.1 of the clean effect.

        Scores are fractions of the clean-vs-corrupted difference; without a
        floor, a grid of pure noise (a random model, or the first rows of a
        run) would be stretched to full colour and look like strong effects.
        """
        low, high = symmetric_levels(values)
        peak = max(high, _MIN_PEAK)
        return -peak, peak

    def _update_status(self, key: str, values: np.ndarray, shown: str = "Exact patching") -> None:
        found = strongest_cell(values)
        cancelled = self.cancelled_at is not None
        name = f"{shown}, {_TITLE[key]}"
        if found is None:
            text = f"{name}: cancelled before any row." if cancelled else f"{name}: computing…"
        else:
            (row, col), value = found
            layer = self._layer(row)
            where = (f"L{layer}H{col}" if _KIND[key] == "head"
                     else f"layer {layer}, position {self._position_name(key, col)}")
            estimate = shown != "Exact patching"
            text = (f"{name}: strongest {where} ({value:+.3g}). "
                    + ("Linear estimate (clean − corrupted) × gradient of the same score; " if estimate else "")
                    + "1 = clean answer restored, 0 = no effect.")
        engine = self.results.meta("engine") if self.results is not None else None
        if shown == "Exact patching":
            if isinstance(engine, Mapping) and engine.get("patching"):
                text += f" Engine: {engine['patching']}."
            elif isinstance(engine, str):
                text += f" Engine: {engine}."
        if np.isnan(values).any():
            done = int(np.isfinite(values).all(axis=tuple(range(1, values.ndim))).sum())
            text += (f" Cancelled at {self.cancelled_at}: {done} of {values.shape[0]} layers computed."
                     if cancelled else " Computing…")
        self.status.setText(text)

    def _position_name(self, key: str, col: int) -> str:
        view = self.view()
        tokens = view.tokens(0) if view is not None else []
        return f"{col} {tokens[col].strip()!r}" if col < len(tokens) else str(col)

    # ------------------------------------------------------------- scatter
    @property
    def scatter_labels(self) -> tuple[pg.TextItem, ...]:
        """The head names written next to the scatter's points (read-only)."""
        return tuple(self._scatter_labels)

    def _clear_scatter_labels(self) -> None:
        for label in self._scatter_labels:
            self.scatter_view.removeItem(label)
        self._scatter_labels = []

    def _draw_scatter(self) -> None:
        value, _ = self._arrays("head_v")
        pattern, _ = self._arrays("head_pattern")
        self.scatter.clear()
        self._clear_scatter_labels()
        if value is None or pattern is None or value.shape != pattern.shape:
            self._scatter_values = None
            self.scatter_view.setVisible(False)
            return
        self._scatter_values = np.stack([pattern, value], axis=-1)
        self.scatter_view.setVisible(not self.error.isVisibleTo(self))
        n_layers, n_heads = value.shape
        spots = []
        for layer in range(n_layers):
            color = SEQUENTIAL.map(layer / max(1, n_layers - 1), mode=pg.ColorMap.QCOLOR)
            for head in range(n_heads):
                if not (np.isfinite(pattern[layer, head]) and np.isfinite(value[layer, head])):
                    continue
                spots.append({"pos": (float(pattern[layer, head]), float(value[layer, head])),
                              "data": (self._layer(layer), head), "brush": pg.mkBrush(color),
                              "pen": pg.mkPen(QColor(40, 40, 40), width=0.5)})
        self.scatter.addPoints(spots)
        # Name the few heads farthest from the origin, as the demo's hover names would.
        distance = np.hypot(np.nan_to_num(pattern), np.nan_to_num(value))
        _, foreground = theme_colors(self)
        peak = float(distance.max())
        for flat in np.argsort(-distance, axis=None)[:6]:
            if distance.flat[flat] < 0.1 * peak or peak == 0.0:
                break  # points crowded at the origin: their names would only cover each other
            layer, head = divmod(int(flat), n_heads)
            label = pg.TextItem(f"L{self._layer(layer)}H{head}", anchor=(0, 1), color=foreground)
            label.setPos(float(pattern[layer, head]), float(value[layer, head]))
            self.scatter_view.addItem(label)
            self._scatter_labels.append(label)
        self._fit_scatter_range(pattern, value)
        self._mark_scatter_selection()

    def _fit_scatter_range(self, pattern: np.ndarray, value: np.ndarray) -> None:
        """Room to the right of and above the points: names sit up and right of their point, and
        auto-range ignores text, so the farthest head's name would be cut off at the edge."""
        xs, ys = pattern[np.isfinite(pattern)], value[np.isfinite(value)]
        if not xs.size or not ys.size:
            return
        x_low, x_high = min(0.0, float(xs.min())), max(0.0, float(xs.max()))
        y_low, y_high = min(0.0, float(ys.min())), max(0.0, float(ys.max()))
        x_span, y_span = (x_high - x_low) or 0.1, (y_high - y_low) or 0.1
        view = self.scatter_view.getViewBox()
        # The room a name takes in pixels (a short plot on a laptop cut "L3H3" at the top), as a fraction
        # of the plot: the range is refitted when the plot is resized.
        def room(need_px: float, size_px: float, least: float) -> float:
            # Extra range (in spans) so ``need_px`` of the plot's ``size_px`` lies beyond the farthest point.
            share = min(0.6, need_px / max(1.0, size_px))
            return max(least, share * 1.08 / (1 - share))

        right = room(50, view.width(), 0.3)
        top = room(26, view.height(), 0.15)
        view.setXRange(x_low - 0.08 * x_span, x_high + right * x_span, padding=0)
        view.setYRange(y_low - 0.08 * y_span, y_high + top * y_span, padding=0)

    def _refit_scatter(self) -> None:
        values = self._scatter_values
        if values is not None:
            self._fit_scatter_range(values[..., 0], values[..., 1])

    def _point_tip(self, x: float, y: float, data: tuple[int, int]) -> str:
        layer, head = data
        return f"L{layer}H{head}\npattern {x:+.3g}\nvalue {y:+.3g}"

    def _on_point_clicked(self, _item, points, _event=None) -> None:
        if len(points):
            layer, head = points[0].data()
            self.selection.select_head(layer, head)

    def _mark_scatter_selection(self) -> None:
        self.scatter_selected.clear()
        layer, head = self.selection.layer, self.selection.head
        values = self._scatter_values
        if values is None or layer is None or head is None:
            return
        layers = self.attention_layers()
        if layers is not None:
            if layer not in layers:
                return
            layer = layers.index(layer)
        if layer < values.shape[0] and head < values.shape[1]:
            x, y = values[layer, head]
            self.scatter_selected.addPoints([{"pos": (float(x), float(y))}])

    def apply_theme(self) -> None:
        background, foreground = theme_colors(self)
        self.scatter_view.setBackground(background)
        for side in ("left", "bottom"):
            self.scatter_view.getAxis(side).setPen(pg.mkPen(foreground))
            self.scatter_view.getAxis(side).setTextPen(pg.mkPen(foreground))
        self.scatter_view.getPlotItem().titleLabel.setAttr("color", foreground)
        self.scatter_view.getPlotItem().setTitle(self.scatter_view.getPlotItem().titleLabel.text)
        for label in self._scatter_labels:
            label.setColor(foreground)

    def view_state(self) -> dict:
        return {"grid": self._chosen_grid or self._grid_key(), "mode": self.mode_combo.currentIndex()}

    def restore_view_state(self, state: dict) -> None:
        grid, mode = state.get("grid"), state.get("mode")
        if isinstance(mode, int) and 0 <= mode < self.mode_combo.count():
            self.mode_combo.setCurrentIndex(mode)
        if isinstance(grid, str) and grid in patching.SWEEPS:
            self._chosen_grid = grid
            index = self.grid_combo.findData(grid)
            if index >= 0:
                self.grid_combo.setCurrentIndex(index)

    # ----------------------------------------------------------- linking
    def _on_grid_changed(self, _index: int) -> None:
        # Programmatic changes block signals, so this is the user's choice.
        if self.sender() is self.grid_combo:
            self._chosen_grid = self._grid_key()
        self._draw_grid()

    def _on_cell_clicked(self, row: int, col: int) -> None:
        if _KIND.get(self._grid_key()) == "head":
            self.selection.select_head(self._layer(row), col)
        else:
            self.selection.select_cell(self._layer(row), col)

    def _on_cell_ctrl_clicked(self, row: int, col: int) -> None:
        """Ctrl/Cmd-click on a head grid pins or unpins that head (other grids: a plain click)."""
        if _KIND.get(self._grid_key()) == "head":
            self.selection.toggle_pin(self._layer(row), col)
        else:
            self._on_cell_clicked(row, col)

    def _on_cell_menu(self, row: int, col: int, where) -> None:
        if _KIND.get(self._grid_key()) == "head":
            self.head_menu(self._layer(row), col).popup(where)

    def update_selection(self, selection: Selection, changed: frozenset) -> None:
        if "head" in changed and _KIND.get(self._grid_key()) == "head_by_pos":
            self._draw_grid()
            return
        super().update_selection(selection, changed)
        self._mark_scatter_selection()

    # ------------------------------------------------------------ export
    def figures(self) -> list[tuple[str, QWidget]]:
        found: list[tuple[str, QWidget]] = []
        if self._grid_key() is not None:
            found.append((self._grid_key(), self.grid_area))
        if self._scatter_values is not None and self.scatter_view.isVisibleTo(self):
            found.append(("value_vs_pattern", self.scatter_view))
        return found

    def tables(self) -> list[tuple[str, Callable[[Path], Path]]]:
        found = []
        for key, kind in _KIND.items():
            exact, estimate = self._arrays(key)
            for prefix, array in (("patch", exact), ("atp", estimate)):
                if array is None:
                    continue
                found.append((f"{prefix}_{key}", self._csv_writer(key, kind, array)))
            if exact is not None and estimate is not None:
                found.append((f"error_{key}", self._csv_writer(key, kind,
                                                                attribution_patching.error_grid(exact, estimate))))
        return found

    def _csv_writer(self, key: str, kind: str, array: np.ndarray) -> Callable[[Path], Path]:
        if kind == "head_by_pos":
            n_layers, n_pos, n_heads = array.shape
            rows = [f"L{layer} pos {pos}" for layer in range(n_layers) for pos in range(n_pos)]
            flat = array.reshape(n_layers * n_pos, n_heads)
            return lambda path: export_grid_csv(path, flat, rows, [f"head {h}" for h in range(n_heads)],
                                                "layer/position")
        rows, cols = self._axis_labels(key, array)
        cols = [c.replace("\n", " ") for c in cols]
        cols = [f"head {c}" for c in cols] if kind == "head" else cols
        return lambda path: export_grid_csv(path, array, rows, cols, "layer")
