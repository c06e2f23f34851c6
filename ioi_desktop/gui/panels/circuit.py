"""Circuit discovery: the circuit graph by layer, its size, and the faithfulness curves of every method.

Left, the graph (EAP-IG's nodes: ``input`` at the bottom, each layer's heads
and MLP side by side, ``logits`` on top) with the edges of the circuit of the
chosen size: blue where corrupting the edge raises the logit difference, red
where it lowers it (the scores estimate m(edge corrupted) - m(clean)), wider
for larger |score|. Hovering an edge shows its name and score. Nodes take the
colour and symbol of their known role (the same markers as the head maps);
clicking a head selects it everywhere (the attention viewer shows it),
Ctrl/Cmd-click pins it; the selected head is ringed and its edges outlined.

Right, the faithfulness curve of each method over MIB's sizes (log axis), CPR
and CMD in the legend, with the current size marked. The size (top n edges by
|score|, pruned to paths from input to logits) and the method are this
panel's view state, saved in sessions (``view_state``).

Everything drawn is computed in :mod:`ioi_desktop.core.circuits.view`.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QFontMetrics
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QSlider, QSpinBox, QSplitter, QVBoxLayout, QWidget

from ioi_desktop.core.analyses import circuit
from ioi_desktop.core.circuits.graph import Graph
from ioi_desktop.core.circuits.view import (WIDTHS, curve_marker, draw_circuit, graph_of_result, head_of,
                                           nearest_curve_point, node_layout)
from ioi_desktop.gui.panels.result_panel import ResultPanel
from ioi_desktop.gui.widgets.colors import NEGATIVE, POSITIVE, SERIES_COLORS, theme_colors
from ioi_desktop.gui.widgets.compact_label import CompactLabel
from ioi_desktop.gui.widgets.export import export_table_csv
from ioi_desktop.gui.widgets.heatmap import marker_styles

NODE_COLORS = {"input": QColor(90, 90, 90), "head": QColor(170, 170, 170), "mlp": QColor(200, 170, 230),
               "logits": QColor(90, 90, 90)}
NODE_SYMBOLS = {"input": "h", "head": "o", "mlp": "s", "logits": "h"}
SELECTED_COLOR = QColor(255, 170, 0)
PINNED_COLOR = QColor(0, 170, 90)
MARKER_COLOR = QColor(120, 60, 160)
EDGE_ALPHA = (90, 150, 210, 240)  # per width class of core.circuits.view.WIDTHS
EMPTY_TEXT = "Run circuit discovery (Run > Analyses > Circuit discovery) to see the circuit."


class CircuitPanel(ResultPanel):
    TITLE = "Circuit"
    RESULTS = (circuit.Result,)
    INLINE_ROLE_LEGEND = False

    def __init__(self, selection, parent: QWidget | None = None) -> None:
        super().__init__(selection, parent)
        self.result: Any = None
        self.graph: Graph | None = None
        self.layout_: Any = None
        self.drawn: Any = None
        self._pending_state: dict | None = None
        self._updating = False

        layout = QVBoxLayout(self)
        controls = QHBoxLayout()
        controls.addWidget(QLabel("Method:"))
        self.method_combo = QComboBox()
        self.method_combo.setObjectName("circuit_method")
        self.method_combo.setToolTip("Whose edge scores choose the circuit drawn")
        self.method_combo.currentIndexChanged.connect(self._on_method_changed)
        controls.addWidget(self.method_combo)
        controls.addWidget(QLabel("Size (top edges):"))
        self.size_slider = QSlider(Qt.Orientation.Horizontal)
        self.size_slider.setObjectName("circuit_size_slider")
        self.size_slider.setToolTip("The circuit's size: the top n edges by |score|, pruned to paths from input "
                                    "to logits")
        self.size_slider.valueChanged.connect(self._on_size_changed)
        controls.addWidget(self.size_slider, 1)
        self.size_spin = QSpinBox()
        self.size_spin.setObjectName("circuit_size")
        self.size_spin.setToolTip(self.size_slider.toolTip())
        self.size_spin.valueChanged.connect(self._on_size_changed)
        controls.addWidget(self.size_spin)
        controls.addWidget(self.roles_checkbox)
        layout.addLayout(controls)
        self.status = CompactLabel(EMPTY_TEXT)
        self.status.setObjectName("circuit_status")
        layout.addWidget(self.status)

        splitter = QSplitter(Qt.Orientation.Horizontal)
        self.graph_view = pg.PlotWidget(title="Circuit graph")
        self.graph_view.setObjectName("circuit_graph")
        self.graph_view.setMenuEnabled(False)
        self.graph_view.hideButtons()
        self.graph_view.setMinimumSize(300, 170)
        self.edge_items: list[pg.PlotDataItem] = []
        # The selected head's edges: a wide halo under the edges, so their sign colour still shows.
        halo = QColor(SELECTED_COLOR)
        halo.setAlpha(90)
        self.highlight = pg.PlotDataItem([], [], connect="pairs", pen=pg.mkPen(halo, width=6.0))
        self.highlight.setZValue(0)
        self.graph_view.addItem(self.highlight)
        self.nodes = pg.ScatterPlotItem(pxMode=True, hoverable=True, tip=self._node_tip)
        self.nodes.setZValue(10)
        self.nodes.sigClicked.connect(self._on_node_clicked)
        self.graph_view.addItem(self.nodes)
        self.pinned_ring = pg.ScatterPlotItem(pxMode=True, brush=None, symbol="s",
                                              pen=pg.mkPen(PINNED_COLOR, width=2.5))
        self.pinned_ring.setZValue(11)
        self.graph_view.addItem(self.pinned_ring)
        self.selected_ring = pg.ScatterPlotItem(pxMode=True, brush=None, symbol="o",
                                                pen=pg.mkPen(SELECTED_COLOR, width=3))
        self.selected_ring.setZValue(12)
        self.graph_view.addItem(self.selected_ring)
        self.graph_view.scene().sigMouseMoved.connect(self._on_mouse_moved)
        # Every row and column is labelled, however short the view (pyqtgraph drops crowded labels).
        for side in ("left", "bottom"):
            self.graph_view.getAxis(side).setStyle(textFillLimits=[(0, 1.0)])
        self.edge_label = QLabel("Hover an edge for its name and score.")
        self.edge_label.setObjectName("circuit_edge_label")
        splitter.addWidget(self.graph_view)

        self.curve_view = pg.PlotWidget(title="Faithfulness")
        self.curve_view.setObjectName("circuit_curve")
        self.curve_view.setMinimumSize(240, 150)
        self.curve_view.setLogMode(x=True, y=False)
        self.curve_view.setLabel("bottom", "edges kept (% of all, log)")
        self.curve_view.setLabel("left", "faithfulness")
        self.curve_view.addItem(pg.InfiniteLine(pos=1.0, angle=0, pen=pg.mkPen(QColor(128, 128, 128), width=1,
                                                                                style=Qt.PenStyle.DashLine)))
        self.curve_items: list[pg.PlotDataItem] = []
        self.size_marker = pg.InfiniteLine(pos=0, angle=90, movable=False, label="size",
                                           labelOpts={"position": 0.5, "color": MARKER_COLOR},
                                           pen=pg.mkPen(MARKER_COLOR, width=2, style=Qt.PenStyle.DashDotLine))
        self.size_marker.setVisible(False)
        self.curve_view.addItem(self.size_marker)
        # The legend sits under the plot, where no curve can hide it.
        self.curve_legend = QLabel("")
        self.curve_legend.setObjectName("circuit_curve_legend")
        self.curve_legend.setTextFormat(Qt.TextFormat.RichText)
        self.curve_legend.setWordWrap(True)
        curve_box = QWidget()
        curve_layout = QVBoxLayout(curve_box)
        curve_layout.setContentsMargins(0, 0, 0, 0)
        curve_layout.addWidget(self.curve_view, 1)
        curve_layout.addWidget(self.curve_legend)
        splitter.addWidget(curve_box)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        layout.addWidget(splitter, 1)
        # One line under both plots: the hovered edge and the roles legend, so the plots keep the height.
        below = QHBoxLayout()
        below.addWidget(self.edge_label, 1)
        below.addWidget(self.roles_legend, 2)
        layout.addLayout(below)
        self.apply_theme()
        self._set_controls_enabled(False)

    # ------------------------------------------------------------ rendering
    def render_results(self) -> None:
        result = None if self.results is None else self.results.result(circuit.Result)
        if result is None or result.circuit_scores is None:
            self.clear_views()
            if result is not None and result.problem:
                self.status.setText(f"No circuit for these prompts: {result.problem}")
            return
        self.result = result
        # The graph is rebuilt from the result's own shape, so saved results draw with no model loaded.
        self.graph = graph_of_result(result.sender_labels, result.circuit_adjacency)
        self.layout_ = node_layout(self.graph)
        state = self._pending_state or {}
        self._pending_state = None
        methods = list(result.method_labels or ())
        method = state.get("method") if state.get("method") in methods else methods[0]
        size = state.get("edges")
        if not isinstance(size, int) or not 0 <= size <= self.graph.n_edges:
            size = result.chosen_size if result.chosen_size is not None else (result.chosen_edges or 0)
        self._updating = True
        try:
            self.method_combo.clear()
            self.method_combo.addItems(methods)
            self.method_combo.setCurrentIndex(methods.index(method))
            for widget in (self.size_slider, self.size_spin):
                widget.setRange(0, self.graph.n_edges)
                widget.setValue(int(size))
            self.size_slider.setPageStep(max(1, self.graph.n_edges // 50))
        finally:
            self._updating = False
        self._set_controls_enabled(True)
        self._draw_axes()
        self._draw_curves()
        self._draw_circuit()

    def _draw_axes(self) -> None:
        plot = self.graph_view.getPlotItem()
        left = plot.getAxis("left")
        left.setTicks([list(self.layout_.row_ticks)])
        # A fixed width that fits the longest row label: pyqtgraph widens an axis only on a later
        # repaint, and until then it clips the labels.
        metrics = QFontMetrics(left.style.get("tickFont") or self.font())
        left.setWidth(max(metrics.horizontalAdvance(text) for _, text in self.layout_.row_ticks) + 18)
        plot.getAxis("bottom").setTicks([list(self.layout_.column_ticks)])
        plot.setXRange(float(self.layout_.x.min()) - 0.7, float(self.layout_.x.max()) + 0.7, padding=0)
        plot.setYRange(-0.6, float(self.layout_.y.max()) + 0.6, padding=0)

    def _draw_curves(self) -> None:
        for item in self.curve_items:
            self.curve_view.removeItem(item)
        self.curve_items = []
        result = self.result
        legend = []
        percents = result.curve_percent
        for i, method in enumerate(result.method_labels):
            color = SERIES_COLORS[i % len(SERIES_COLORS)]
            name = f"{method}: CPR {result.cpr[method]:.2f}, CMD {result.cmd[method]:.2f}"
            item = self.curve_view.plot(percents, result.curve_faithfulness[i], name=name,
                                        pen=pg.mkPen(color, width=2), symbol="o", symbolSize=6,
                                        symbolBrush=color, symbolPen=None)
            self.curve_items.append(item)
            legend.append(f'<span style="color:{color.name()}; font-weight:bold">━━</span>&nbsp;{escape(name)}')
        self.curve_legend.setText("<br>".join(legend))

    def _current_method_index(self) -> int:
        return max(0, self.method_combo.currentIndex())

    def _draw_circuit(self) -> None:
        result, graph = self.result, self.graph
        index = self._current_method_index()
        scores = result.circuit_scores[index]
        self.drawn = draw_circuit(graph, self.layout_, scores, self.size_spin.value(), result.selection or "topn")
        for item in self.edge_items:
            self.graph_view.removeItem(item)
        self.edge_items = []
        for group in self.drawn.groups:
            color = QColor(POSITIVE if group.positive else NEGATIVE)
            color.setAlpha(EDGE_ALPHA[WIDTHS.index(group.width)])  # weak edges recede, strong ones stand out
            item = pg.PlotDataItem(group.x, group.y, connect="pairs", pen=pg.mkPen(color, width=group.width))
            item.setZValue(1)
            self.graph_view.addItem(item)
            self.edge_items.append(item)
        self._draw_nodes()
        percent = self.drawn.percent
        self.size_marker.setValue(curve_marker(percent, result.curve_percent))
        self.size_marker.setVisible(True)
        method = result.method_labels[index]
        nearest = nearest_curve_point(result.curve_percent, result.curve_faithfulness[index], percent)
        text = (f"{method}: top {self.drawn.requested} of {self.drawn.n_edges} edges ({percent:.3g}%), "
                f"{self.drawn.kept} kept after pruning.")
        if nearest is not None:
            text += f" Curve at {nearest[0]:g}%: faithfulness {nearest[1]:.3f}."
        text += f" m(full) = {result.full:.3g}, m(empty) = {result.empty:.3g}."
        tip = "m: the mean logit difference at END."
        if result.chosen_edges is not None and result.chosen_faithfulness is not None:
            tip += (f" The run's circuit ({result.method_labels[0]}): {result.chosen_edges} edges, "
                    f"faithfulness {result.chosen_faithfulness:.3f}.")
        self.status.setText(text)
        self.status.setToolTip(tip)
        self.update_selection(self.selection.current, frozenset({"layer", "head"}))

    def _node_styles(self) -> tuple[list[str], list[QColor], dict[str, str]]:
        """Per node its symbol and colour (known roles first), and the roles shown (for the legend)."""
        kinds, heads = self.layout_.kinds, self.layout_.heads
        symbols = [NODE_SYMBOLS[kind] for kind in kinds]
        colors = [QColor(NODE_COLORS[kind]) for kind in kinds]
        shown: dict[str, str] = {}
        if self.head_roles is not None and self.roles_checkbox.isChecked():
            roles = self.head_roles.within(self.graph.n_layers, self.graph.n_heads)
            by_head = {(r.layer, r.head): r.role for r in roles.by_head().values()}
            styles = marker_styles(by_head.values(), roles.legend)
            for i, head in enumerate(heads):
                if head in by_head:
                    symbols[i], colors[i] = styles[by_head[head]]
                    shown[by_head[head]] = roles.legend.get(by_head[head], "")
        return symbols, colors, shown

    def _draw_nodes(self) -> None:
        symbols, colors, shown = self._node_styles()
        size = self._node_size()
        spots = []
        for i, name in enumerate(self.layout_.names):
            color = QColor(colors[i])
            if not self.drawn.nodes_in[i]:
                color.setAlpha(70)  # outside the circuit: faded
            spots.append({"pos": (self.layout_.x[i], self.layout_.y[i]), "data": i, "symbol": symbols[i],
                          "brush": pg.mkBrush(color), "size": size,
                          "pen": pg.mkPen(QColor(60, 60, 60), width=1)})
        self.nodes.setData(spots)
        self.roles_legend.setText(self._legend_html(shown) if shown else "")

    def _node_size(self) -> int:
        return 20 if self.graph is not None and self.graph.n_heads <= 6 else 12

    def _node_tip(self, x: float, y: float, data: Any) -> str:
        if self.layout_ is None or not isinstance(data, (int, np.integer)):
            return ""
        name = self.layout_.names[int(data)]
        text = name
        if self.result is not None and int(data) < self.graph.n_senders:
            score = self.result.circuit_node_scores[self._current_method_index(), int(data)]
            text += f": outgoing edge scores sum {score:+.4g}"
        head = head_of(self.layout_, int(data))
        if head is not None and self.head_roles is not None:
            role = self.head_roles.by_head().get(head)
            if role is not None:
                text += f" — {role.role}"
        return text

    def _update_roles_overlay(self) -> None:
        super()._update_roles_overlay()
        if self.drawn is not None:
            self._draw_nodes()
            self.update_selection(self.selection.current, frozenset({"layer", "head"}))

    def update_selection(self, selection, changed: frozenset) -> None:
        super().update_selection(selection, changed)
        if self.drawn is None or self.layout_ is None:
            return
        size = self._node_size()
        node = None
        if selection.layer is not None and selection.head is not None:
            node = self.layout_.index_of_head(selection.layer, selection.head)
        if node is None:
            self.selected_ring.setData([])
            self.highlight.setData([], [])
        else:
            self.selected_ring.setData([self.layout_.x[node]], [self.layout_.y[node]], size=size + 10)
            x, y = self.drawn.incident(node, self.graph)
            self.highlight.setData(x, y, connect="pairs")
        pinned = [self.layout_.index_of_head(layer, head) for layer, head in self.selection.pinned]
        pinned = [i for i in pinned if i is not None]
        self.pinned_ring.setData([self.layout_.x[i] for i in pinned], [self.layout_.y[i] for i in pinned],
                                 size=size + 6)

    # ------------------------------------------------------------ interaction
    def _on_node_clicked(self, _scatter, points, event=None) -> None:
        if not len(points) or self.layout_ is None:
            return
        head = head_of(self.layout_, int(points[0].data()))
        if head is None:
            return
        modifiers = event.modifiers() if event is not None else Qt.KeyboardModifier.NoModifier
        if modifiers & (Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.MetaModifier):
            self.selection.toggle_pin(*head)
        else:
            self.selection.select_head(*head)

    def click_node(self, name: str, pin: bool = False) -> None:
        """What a click (``pin``: a Ctrl-click) on the node called ``name`` does."""
        head = head_of(self.layout_, self.layout_.names.index(name))
        if head is not None:
            (self.selection.toggle_pin if pin else self.selection.select_head)(*head)

    def node_position(self, name: str) -> tuple[float, float]:
        """The view position of a node (for tests and screenshots)."""
        i = self.layout_.names.index(name)
        return float(self.layout_.x[i]), float(self.layout_.y[i])

    def _on_mouse_moved(self, scene_pos) -> None:
        if self.drawn is None:
            return
        view = self.graph_view.getPlotItem().vb
        point = view.mapSceneToView(scene_pos)
        pixel = view.viewPixelSize()[0] if view.viewPixelSize() else 0.05
        index = self.drawn.nearest(point.x(), point.y(), tolerance=4 * pixel)
        self.edge_label.setText(self.drawn.describe(index) if index is not None
                                else "Hover an edge for its name and score.")

    def _on_method_changed(self, _index: int) -> None:
        if not self._updating and self.result is not None:
            self._draw_circuit()

    def _on_size_changed(self, value: int) -> None:
        if self._updating:
            return
        self._updating = True
        try:
            self.size_slider.setValue(value)
            self.size_spin.setValue(value)
        finally:
            self._updating = False
        if self.result is not None:
            self._draw_circuit()

    def _set_controls_enabled(self, enabled: bool) -> None:
        for widget in (self.method_combo, self.size_slider, self.size_spin):
            widget.setEnabled(enabled)

    # ------------------------------------------------------------ view state (sessions)
    def view_state(self) -> dict:
        """The chosen method and size, for the session file."""
        if self.result is None:
            return {}
        return {"method": self.method_combo.currentText(), "edges": int(self.size_spin.value())}

    def restore_view_state(self, state: Any) -> None:
        """Method and size from a session; applied now if the results are drawn, else when they are."""
        if not isinstance(state, dict) or not state:
            return
        self._pending_state = dict(state)
        if self.result is not None and not self._stale:
            self._draw_results()

    def clear_views(self) -> None:
        self.result = None
        self.drawn = None
        for item in self.edge_items + self.curve_items:
            (self.graph_view if item in self.edge_items else self.curve_view).removeItem(item)
        self.edge_items, self.curve_items = [], []
        self.curve_legend.setText("")
        self.nodes.setData([])
        self.selected_ring.setData([])
        self.pinned_ring.setData([])
        self.highlight.setData([], [])
        self.size_marker.setVisible(False)
        self.method_combo.clear()
        self.roles_legend.setText("")
        self.status.setText(EMPTY_TEXT)
        self._set_controls_enabled(False)

    def apply_theme(self) -> None:
        background, foreground = theme_colors(self)
        for view in (self.graph_view, self.curve_view):
            view.setBackground(background)
            for side in ("left", "bottom"):
                view.getAxis(side).setPen(pg.mkPen(foreground))
                view.getAxis(side).setTextPen(pg.mkPen(foreground))

    # ------------------------------------------------------------ export
    def figures(self) -> list[tuple[str, QWidget]]:
        return [("graph", self.graph_view), ("faithfulness", self.curve_view)] if self.drawn is not None else []

    def tables(self) -> list[tuple[str, Callable[[Path], Path]]]:
        if self.drawn is None:
            return []
        drawn, result = self.drawn, self.result
        method = result.method_labels[self._current_method_index()]
        edges = [(name, method, f"{score:.6g}") for name, score in zip(drawn.names, drawn.scores)]
        curves = [(m, f"{p:g}", int(result.curve_edges[i, k]), f"{result.curve_metric[i, k]:.6g}",
                   f"{result.curve_faithfulness[i, k]:.6g}")
                  for i, m in enumerate(result.method_labels) for k, p in enumerate(result.curve_percent)]
        return [
            ("edges", lambda path: export_table_csv(path, ["edge", "method", "score"], edges)),
            ("faithfulness", lambda path: export_table_csv(
                path, ["method", "percent", "edges", "metric", "faithfulness"], curves)),
        ]

