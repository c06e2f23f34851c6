"""Attention viewer: where one head looks, on one prompt.

Shows the selected head's clean attention pattern for the selected prompt as
a query x key heatmap (row = the token doing the looking, column = the token
looked at; each row sums to 1, so the colour scale is fixed at 0..1). The
patterns of every head and prompt come cached in the results, so selecting a
head anywhere in the app shows it here at once, with no recomputation.

Clicking a cell selects that query position: the token strip below shades
every key by that query's attention and outlines the strongest keys. Keys:
Left/Right step heads, Up/Down step layers, PageUp/PageDown step prompts.
"Pin head" adds the current head to the selection's shared pinned set (the
set Ctrl/Cmd-click builds in any head map, which ablation and path patching
use); the last three pinned heads are shown side by side for comparison.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QFont, QFontMetrics
from PySide6.QtWidgets import (
    QBoxLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ioi_desktop.core.analyses import attention
from ioi_desktop.core.grids import strongest_cell
from ioi_desktop.core.selection import Selection
from ioi_desktop.gui.panels.result_panel import ResultPanel
from ioi_desktop.gui.widgets.export import export_grid_csv
from ioi_desktop.gui.widgets.heatmap import Heatmap, short_token
from ioi_desktop.gui.widgets.token_strip import TokenStrip, TokenStripScroller

_MAX_PINS = 3
# Default side of one attention cell in pixels (square; the Zoom box changes it), and of a pinned head's.
CELL_PX = 24
PINNED_CELL_PX = 14
# "Fit" never makes a cell smaller than this (a row label's height), nor larger than MAX_FIT_PX.
MIN_FIT_PX = 14
MAX_FIT_PX = 40
# Beside the maps, the status, caption and token strip get at least this width; narrower, they go below.
SIDE_MIN_WIDTH = 300
_EMPTY = "Run the attention analysis, then pick a head (click one in any head heatmap)."


def _row_label(position: int, token: str) -> str:
    return f"{short_token(token, 10)}  {position}"


def _col_label(position: int, token: str) -> str:
    # Drawn rotated, so the whole (short) token fits: every key is labelled.
    return f"{short_token(token, 10)} {position}"


class _MapsScroll(QScrollArea):
    """Scrolls the maps with the mouse and scroll bars; the arrow and page keys stay the panel's
    (they step heads, layers and prompts)."""

    def keyPressEvent(self, event) -> None:  # noqa: N802 - Qt override
        event.ignore()


class AttentionPanel(ResultPanel):
    TITLE = "Attention"
    RESULTS = (attention.Result,)
    RENDERS_SELECTION = True

    def __init__(self, selection, parent: QWidget | None = None) -> None:
        super().__init__(selection, parent)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        layout = QVBoxLayout(self)
        # Narrow margins: in a laptop's short dock every pixel of height goes to the pattern's rows.
        layout.setContentsMargins(4, 4, 4, 4)
        # Two rows of controls, side by side above the maps, one under the other in the side column.
        self.controls = QWidget()
        self.controls_layout = QBoxLayout(QBoxLayout.Direction.LeftToRight, self.controls)
        self.controls_layout.setContentsMargins(0, 0, 0, 0)
        controls = QHBoxLayout()
        self.controls_layout.addLayout(controls)
        self.prompt_spin = self._spin("Prompt", controls, "Prompt (PageUp/PageDown)")
        self.layer_spin = self._spin("Layer", controls, "Layer (Up/Down)")
        self.head_spin = self._spin("Head", controls, "Head (Left/Right)")
        controls.addStretch(0)
        controls = QHBoxLayout()
        self.controls_layout.addLayout(controls, 1)
        self.pin_button = QPushButton("Pin head")
        self.pin_button.setToolTip(f"Keep this head on screen to compare up to {_MAX_PINS} heads side by side")
        self.pin_button.clicked.connect(self._on_pin_clicked)
        self.unpin_button = QPushButton("Clear pins")
        self.unpin_button.clicked.connect(self._on_unpin_clicked)
        controls.addWidget(self.pin_button)
        controls.addWidget(self.unpin_button)
        controls.addWidget(QLabel("Zoom"))
        self.zoom_spin = QSpinBox()
        self.zoom_spin.setRange(MIN_FIT_PX - 1, 64)
        # The lowest value reads "Fit": square cells as large as the panel allows, never below
        # MIN_FIT_PX (every token still labelled); longer prompts scroll.
        self.zoom_spin.setSpecialValueText("Fit")
        self.zoom_spin.setValue(MIN_FIT_PX - 1)
        self.zoom_spin.setSuffix(" px")
        self.zoom_spin.setToolTip("Side of one attention cell (Fit: as large as the panel allows); long prompts scroll")
        self.zoom_spin.valueChanged.connect(lambda _value: self._draw())
        controls.addWidget(self.zoom_spin)
        controls.addStretch(1)
        hint = QLabel("←/→ head  ↑/↓ layer  PgUp/PgDn prompt")
        hint.setEnabled(False)
        hint.setToolTip(hint.text())
        # A reminder, not a control: it may be cut off rather than widen a narrow window.
        hint.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        controls.addWidget(hint)
        layout.addWidget(self.controls)
        self.status = QLabel(_EMPTY)
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        self._side_by_side = False

        self.maps_area = QWidget()
        maps = QHBoxLayout(self.maps_area)
        maps.setContentsMargins(0, 0, 0, 0)
        self.heatmap = Heatmap(title="Attention pattern", row_title="query", col_title="key")
        self.heatmap.setMinimumSize(260, 200)
        self.heatmap.set_square_cells(True)
        self.heatmap.set_rotated_col_labels(True)
        self.heatmap.set_hover_text(self._describe_cell)
        # The hovered cell's read-out is its tooltip: the line under the plot would take a row's height.
        self.heatmap.set_hover_line(False)
        self.heatmap.cell_clicked.connect(self._on_cell_clicked)
        maps.addWidget(self.heatmap, 2)
        self.pinned_maps: list[Heatmap] = []
        for _ in range(_MAX_PINS):
            pinned = Heatmap(row_title="query", col_title="key")
            pinned.setMinimumSize(180, 160)
            pinned.set_square_cells(True)
            pinned.set_rotated_col_labels(True)
            pinned.setVisible(False)
            maps.addWidget(pinned, 1)
            self.pinned_maps.append(pinned)
        # Square cells of a long prompt need more room than the dock has: the maps scroll.
        self.maps_scroll = _MapsScroll()
        # The maps keep the size their square cells need (no stretching); the area scrolls around them.
        self.maps_scroll.setWidgetResizable(False)
        self.maps_scroll.setWidget(self.maps_area)
        # Small: in a short dock the maps scroll rather than push the caption and strip over them.
        self.maps_scroll.setMinimumHeight(60)

        self.strip_caption = QLabel("")
        self.strip_caption.setWordWrap(True)
        self.strip = TokenStrip()
        self.strip.token_clicked.connect(self._on_token_clicked)
        # The caption and token strip go beside the maps when the dock is wide enough (a laptop's dock is
        # wide but short: below the maps they left the pattern ~2 rows), else under them.
        self.side = QWidget()
        side = QVBoxLayout(self.side)
        side.setContentsMargins(0, 0, 0, 0)
        side.addWidget(self.strip_caption)
        side.addWidget(TokenStripScroller(self.strip))
        side.addStretch(1)
        self.body = QBoxLayout(QBoxLayout.Direction.TopToBottom)
        self.body.addWidget(self.maps_scroll, 1)
        self.body.addWidget(self.side, 0)
        layout.addLayout(self.body, 1)

        self.prompt_spin.valueChanged.connect(lambda value: self.selection.select_prompt(value))
        self.layer_spin.valueChanged.connect(
            lambda value: self.selection.select_head(value, self.head_spin.value()))
        self.head_spin.valueChanged.connect(
            lambda value: self.selection.select_head(self.layer_spin.value(), value))

    def _spin(self, label: str, layout: QHBoxLayout, tip: str) -> QSpinBox:
        layout.addWidget(QLabel(label))
        spin = QSpinBox()
        spin.setRange(0, 0)
        spin.setToolTip(tip)
        spin.setKeyboardTracking(False)
        layout.addWidget(spin)
        return spin

    # ---------------------------------------------------------------- data
    def _patterns(self) -> np.ndarray | None:
        return None if self.results is None else self.results.array("attention_pattern")

    def layer_rows(self) -> list[int]:
        """The model layer of each row of the patterns: every layer, or a hybrid's attention layers only."""
        patterns = self._patterns()
        if patterns is None:
            return []
        result = self.results.result(attention.Result)
        layers = None if result is None else result.attention_layers
        return [int(layer) for layer in layers] if layers else list(range(patterns.shape[1]))

    def shown_head(self) -> tuple[int, int, int]:
        """(prompt, layer, head) on screen: the selection, clamped to what the results hold (on a hybrid,
        the attention layer nearest the selected layer)."""
        patterns = self._patterns()
        selection = self.selection
        prompt, layer, head = selection.prompt, selection.layer or 0, selection.head or 0
        if patterns is not None:
            prompt = min(prompt, patterns.shape[0] - 1)
            rows = self.layer_rows()
            layer = layer if layer in rows else min(rows, key=lambda row: (abs(row - layer), row))
            head = min(head, patterns.shape[2] - 1)
        return prompt, layer, head

    def _tokens(self, prompt: int, width: int) -> list[str]:
        tokens = self.results.tokens(prompt) if self.results is not None else []
        return tokens if tokens else [str(i) for i in range(width)]

    def shown_pattern(self) -> np.ndarray | None:
        """The [query, key] pattern on screen, trimmed to the prompt's real length."""
        patterns = self._patterns()
        if patterns is None:
            return None
        prompt, layer, head = self.shown_head()
        n = min(len(self._tokens(prompt, patterns.shape[-1])), patterns.shape[-1])
        return patterns[prompt, self.layer_rows().index(layer), head, :n, :n]

    def render_results(self) -> None:
        patterns = self._patterns()
        if patterns is None:
            self.clear_views()
            self.status.setText("These results have no attention patterns; run the attention analysis.")
            return
        n_prompts, n_heads = patterns.shape[0], patterns.shape[2]
        rows = self.layer_rows()
        for spin, low, top in ((self.prompt_spin, 0, n_prompts - 1), (self.layer_spin, rows[0], rows[-1]),
                               (self.head_spin, 0, n_heads - 1)):
            spin.blockSignals(True)
            spin.setRange(low, top)
            spin.blockSignals(False)
        self._draw()

    def clear_views(self) -> None:
        self.heatmap.clear_data()
        self.heatmap.setMinimumSize(260, 200)
        self.maps_area.resize(self.maps_scroll.viewport().size())
        for pinned in self.pinned_maps:
            pinned.clear_data()
            pinned.setVisible(False)
        self.strip.set_tokens([])
        self.strip_caption.setText("")
        self.status.setText(_EMPTY)

    def _draw(self) -> None:
        pattern = self.shown_pattern()
        if pattern is None:
            return
        prompt, layer, head = self.shown_head()
        for spin, value in ((self.prompt_spin, prompt), (self.layer_spin, layer), (self.head_spin, head)):
            spin.blockSignals(True)
            spin.setValue(value)
            spin.blockSignals(False)
        tokens = self._tokens(prompt, pattern.shape[0])
        rows = [_row_label(i, t) for i, t in enumerate(tokens)]
        cols = [_col_label(i, t) for i, t in enumerate(tokens)]
        self.heatmap.set_titles(f"L{layer}H{head} — prompt {prompt}", "query", "key")
        self.heatmap.set_data(pattern, rows, cols, signed=False, levels=(0.0, 1.0), value_format="{:.3f}")
        self._arrange(len(tokens), rows, cols)
        cell = self.cell_px(len(tokens), rows, cols)
        self.heatmap.setMinimumSize(*self._map_size(len(tokens), cell, rows, cols))
        patterns = self._patterns()
        pins = self.pinned_heads()
        for index, pinned in enumerate(self.pinned_maps):
            if index >= len(pins):
                pinned.setVisible(False)
                continue
            pin_layer, pin_head = pins[index]
            pinned.setVisible(True)
            # Named like the main map: head name in the title, tokens on both axes.
            pinned.set_titles(f"L{pin_layer}H{pin_head} (pinned) — prompt {prompt}", "query", "key")
            row = self.layer_rows().index(pin_layer)
            values = patterns[prompt, row, pin_head, : pattern.shape[0], : pattern.shape[1]]
            pinned.set_data(values, rows, cols, signed=False, levels=(0.0, 1.0), value_format="{:.3f}")
            pinned.setMinimumSize(*self._map_size(len(tokens), max(8, cell * PINNED_CELL_PX // CELL_PX), rows, cols))
        layout = self.maps_area.layout()
        layout.activate()
        self.maps_area.resize(self.maps_area.minimumSizeHint())
        self._fit_maps_width()
        self.strip.set_tokens(tokens, self.results.roles(prompt))
        self._draw_query()
        role = ""
        if self.head_roles is not None:
            known = self.head_roles.by_head().get((layer, head))
            role = f" Known role: {known.role}." if known is not None else ""
        selected = self.selection.layer
        if selected is not None and selected != layer:
            listed = ", ".join(str(row) for row in self.layer_rows())
            role += (f" Layer {selected} has no attention heads (this hybrid has attention in layer"
                     f"{'s' if len(self.layer_rows()) > 1 else ''} {listed} only); showing layer {layer}.")
        self.status.setText(f"Head L{layer}H{head} on prompt {prompt}: each row is a query token, its colours "
                            f"show how much it attends to each key (rows sum to 1).{role}")

    def smallest_cell_px(self) -> int:
        """The smallest cell "Fit" makes: a row label's height and the heatmap's 2 px between labels,
        so every query stays labelled."""
        return max(MIN_FIT_PX, QFontMetrics(QFont()).height() + 2)

    def cell_px(self, n: int, rows: list[str], cols: list[str]) -> int:
        """The side of a cell: the Zoom box's, or with "Fit" the largest that fits the visible area."""
        zoom = self.zoom_spin.value()
        if zoom >= MIN_FIT_PX:
            return zoom
        viewport = self.maps_scroll.viewport()
        width, height = self._map_size(n, 0, rows, cols)
        pins = len(self.pinned_heads())
        # Beside the side column the maps may take what the column leaves, not only their current width.
        room = self._maps_room() if self._side_by_side else viewport.width()
        room_w = (room - 8) / (1 + pins * PINNED_CELL_PX / CELL_PX) - width
        room_h = viewport.height() - 4 - height
        fit = int(min(room_w, room_h) // max(n, 1))
        return max(self.smallest_cell_px(), min(MAX_FIT_PX, fit))

    def side_by_side(self) -> bool:
        """True when the status, caption and token strip sit beside the maps (a wide dock), not below them."""
        return self._side_by_side

    def _maps_room(self) -> int:
        """The width the maps may take beside a SIDE_MIN_WIDTH side column."""
        margins = self.layout().contentsMargins()
        return self.width() - margins.left() - margins.right() - self.body.spacing() - SIDE_MIN_WIDTH

    def _arrange(self, n: int, rows: list[str], cols: list[str]) -> None:
        """Side column beside the maps when the maps at their smallest cells leave it SIDE_MIN_WIDTH."""
        width = self._map_size(n, self.smallest_cell_px(), rows, cols)[0]
        pins = len(self.pinned_heads())
        width = int(width * (1 + pins * PINNED_CELL_PX / CELL_PX))
        beside = width + self.maps_scroll.verticalScrollBar().sizeHint().width() + 8 <= self._maps_room()
        if beside == self._side_by_side:
            return
        self._side_by_side = beside
        side = self.side.layout()
        if beside:
            # The maps get the dock's whole height: controls, status, caption and strip go in the column.
            self.body.setDirection(QBoxLayout.Direction.LeftToRight)
            self.controls_layout.setDirection(QBoxLayout.Direction.TopToBottom)
            side.insertWidget(0, self.controls)
            side.insertWidget(1, self.status)
            # The maps take the width they need (their maximum, see _fit_maps_width), the column the rest.
            self.body.setStretch(0, 1)
            self.body.setStretch(1, 0)
        else:
            self.body.setDirection(QBoxLayout.Direction.TopToBottom)
            self.controls_layout.setDirection(QBoxLayout.Direction.LeftToRight)
            self.layout().insertWidget(0, self.controls)
            self.layout().insertWidget(1, self.status)
            self.body.setStretch(0, 1)
            self.body.setStretch(1, 0)
            self.maps_scroll.setMinimumWidth(0)
            self.maps_scroll.setMaximumWidth(16_777_215)
            self.side.setMaximumWidth(16_777_215)
        self.layout().activate()

    def _fit_maps_width(self) -> None:
        """Beside the side column, the maps' scroll area is as wide as the maps (the column takes the rest)."""
        if not self._side_by_side:
            return
        frame = 2 * self.maps_scroll.frameWidth()
        bar = self.maps_scroll.verticalScrollBar()
        taller = self.maps_area.height() > self.maps_scroll.viewport().height()
        width = self.maps_area.width() + frame + (bar.sizeHint().width() if taller else 0) + 2
        # A maximum the stretch fills, not the size hint (Qt bounds a scroll area's at 36 lines' width: a
        # 1920 px window's larger cells scrolled sideways under a cut colour bar), and no minimum (it would
        # hold the dock wide when the window shrinks, squeezing the input column).
        width = min(width, max(60, self._maps_room()))
        self.maps_scroll.setMinimumWidth(0)
        self.maps_scroll.setMaximumWidth(width)
        # ... and the column no wider than what the maps leave (its token strip would ask for 900 px).
        self.side.setMaximumWidth(max(SIDE_MIN_WIDTH, self._maps_room() + SIDE_MIN_WIDTH - width))

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        if self.zoom_spin.value() < MIN_FIT_PX and self.shown_pattern() is not None:
            self._draw()

    def _map_size(self, n: int, cell: int, rows: list[str], cols: list[str]) -> tuple[int, int]:
        """Room for n x n square cells of ``cell`` px plus the labelled axes and the colour bar."""
        metrics = self.fontMetrics()
        # Measured on the drawn map: the row labels and the axis title on the left, the colour bar on the
        # right; the title above; the rotated key labels and the axis title below (no hover line).
        left = max((metrics.horizontalAdvance(r) for r in rows), default=20) + metrics.height() + 18
        bottom = int(max((metrics.horizontalAdvance(c) for c in cols), default=20) * 0.77) + 2 * metrics.height() + 8
        # A few pixels of slack so the cells stay square.
        return left + n * cell + 74, 2 * metrics.height() + 18 + n * cell + bottom

    def query_position(self) -> int:
        """The query row in focus: the selected position, else the prompt's END (last token)."""
        pattern = self.shown_pattern()
        n = 0 if pattern is None else pattern.shape[0]
        position = self.selection.position
        if position is not None and position < n:
            return position
        prompt = self.shown_head()[0]
        end = self.results.roles(prompt).get("END") if self.results is not None else None
        return end if end is not None and end < n else max(0, n - 1)

    def _draw_query(self) -> None:
        pattern = self.shown_pattern()
        if pattern is None or not pattern.shape[0]:
            return
        query = self.query_position()
        weights = pattern[query]
        self.strip.set_weights(weights, label=f"attention from query {query}", full_scale=1.0)
        self.strip.set_selected(query)
        key = self.selection.key_pos
        if key is None or key >= pattern.shape[1]:
            key = strongest_cell(weights, by="max")[0][0]
        self.heatmap.set_selected((query, key))
        tokens = self._tokens(self.shown_head()[0], pattern.shape[0])
        strongest = ", ".join(f"{k} {tokens[k].strip()!r} {weights[k]:.2f}" for k in self.strip.strongest(3))
        self.strip_caption.setText(f"Query {query} {tokens[query].strip()!r} attends most to: {strongest}")

    def _describe_cell(self, query: int, key: int, value: float) -> str:
        tokens = self._tokens(self.shown_head()[0], max(query, key) + 1)
        return f"query {query} {tokens[query]!r} → key {key} {tokens[key]!r}: {value:.3f}"

    # ------------------------------------------------------------- linking
    def update_selection(self, selection: Selection, changed: frozenset) -> None:
        if self.results is None or self._patterns() is None:
            return
        if changed & {"prompt", "layer", "head", "pinned"}:
            self._draw()
        elif changed & {"position", "key_pos"}:
            self._draw_query()

    def _on_cell_clicked(self, query: int, key: int) -> None:
        self.selection.update(position=query, key_pos=key)

    def _on_token_clicked(self, position: int) -> None:
        self.selection.update(position=position, key_pos=None)

    def _on_pin_clicked(self) -> None:
        if self._patterns() is None:
            return
        _, layer, head = self.shown_head()
        if (layer, head) not in self.selection.pinned:
            self.selection.set_pinned([*self.selection.pinned, (layer, head)])

    def _on_unpin_clicked(self) -> None:
        self.selection.clear_pinned()

    def pinned_heads(self) -> list[tuple[int, int]]:
        """The shared pinned set's last ``_MAX_PINS`` heads that these results have (shown side by side)."""
        patterns = self._patterns()
        if patterns is None:
            return []
        rows, n_heads = self.layer_rows(), patterns.shape[2]
        return [(l, h) for l, h in self.selection.pinned if l in rows and h < n_heads][-_MAX_PINS:]

    def keyPressEvent(self, event) -> None:  # noqa: N802 - Qt override
        patterns = self._patterns()
        if patterns is None:
            super().keyPressEvent(event)
            return
        n_prompts, n_layers, n_heads = patterns.shape[:3]
        prompt, layer, head = self.shown_head()
        rows = self.layer_rows()  # a hybrid steps through its attention layers only
        row = rows.index(layer)
        key = event.key()
        if key in (Qt.Key.Key_Left, Qt.Key.Key_Right):
            # Heads are stepped in (layer, head) order, wrapping into the next layer.
            flat = (row * n_heads + head + (1 if key == Qt.Key.Key_Right else -1)) % (n_layers * n_heads)
            row, head = divmod(flat, n_heads)
            self.selection.select_head(rows[row], head)
        elif key in (Qt.Key.Key_Up, Qt.Key.Key_Down):
            self.selection.select_head(rows[(row + (1 if key == Qt.Key.Key_Down else -1)) % n_layers], head)
        elif key in (Qt.Key.Key_PageUp, Qt.Key.Key_PageDown):
            self.selection.select_prompt((prompt + (1 if key == Qt.Key.Key_PageDown else -1)) % n_prompts)
        else:
            super().keyPressEvent(event)
            return
        event.accept()

    # ------------------------------------------------------------- export
    def figures(self) -> list[tuple[str, QWidget]]:
        return [] if self.shown_pattern() is None else [("pattern", self.maps_area), ("query_strip", self.strip)]

    def tables(self) -> list[tuple[str, Callable[[Path], Path]]]:
        pattern = self.shown_pattern()
        if pattern is None:
            return []
        prompt, layer, head = self.shown_head()
        tokens = self._tokens(prompt, pattern.shape[0])
        labels = [f"{i}: {t}" for i, t in enumerate(tokens)]
        return [(f"prompt{prompt}_L{layer}H{head}",
                 lambda path: export_grid_csv(path, pattern, labels, labels, "query \\ key"))]
