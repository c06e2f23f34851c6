"""Logit lens: what the model would predict if it stopped after each layer.

The grid reads the residual stream before every layer (and after the last)
at every position of the selected prompt through the final LayerNorm and the
unembedding, and writes the top token in each cell. The colour is switchable:
the top token's probability, the logit difference (correct - incorrect) on a
diverging scale symmetric around 0, or the probability of the correct answer.

The grid always recomputes LayerNorm on each cell's residual stream (the
standard logit lens) and its title says so.

Beside it, the logit-difference lens: the logit difference at END read from
the accumulated residual stream after every half-layer (0_pre, 0_mid, ...,
final_post), averaged over prompts, with the selected prompt's own line. Its
title says how the final LayerNorm was applied (``meta["lens_norm"]``): the
final LayerNorm's cached scale (the notebook's method, the default) or
recomputed at each point.
Rows line up with the grid's layers, top to bottom. Clicking a grid cell
selects that (layer, position) everywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QSplitter, QVBoxLayout, QWidget

from ioi_desktop.core.analyses import logit_lens
from ioi_desktop.core.selection import Selection
from ioi_desktop.gui.panels.result_panel import ResultPanel, axis_position_labels
from ioi_desktop.gui.widgets.colors import SERIES_COLORS, theme_colors
from ioi_desktop.gui.widgets.compact_label import CompactLabel
from ioi_desktop.gui.widgets.export import export_grid_csv, export_table_csv
from ioi_desktop.gui.widgets.heatmap import Heatmap, fit_axis, set_legend_text_color, short_token, tick_labels
from ioi_desktop.gui.widgets.plot_fit import FittedPlotWidget

# (label, array holding the colour values [lens_layer, prompt, pos(, rank)], signed)
COLOURINGS = (
    ("Top token's probability", "logit_lens_grid_top_probs", False),
    ("Logit difference (correct − incorrect)", "logit_lens_grid_logit_diff", True),
    ("Probability of the correct answer", "logit_lens_grid_p_correct", False),
)
_EMPTY = "Run the logit lens to see what each layer's residual stream predicts."
# How the logit-difference lens applied the final LayerNorm (meta "lens_norm"), as its plot title says it.
LENS_TITLES = {
    "cached_final": "Logit difference lens<br>at END, cached final LN",
    "recompute": "Logit difference lens<br>at END, LN recomputed",
}
GRID_NOTE = "LN recomputed per cell"


class LogitLensPanel(ResultPanel):
    TITLE = "Logit lens"
    RESULTS = (logit_lens.Result,)
    STREAMED = ("logit_lens_grid_top_ids", "logit_lens_grid_top_probs", "logit_lens_grid_logit_diff")
    RENDERS_SELECTION = True

    def __init__(self, selection, parent: QWidget | None = None) -> None:
        super().__init__(selection, parent)
        self._streamed_text: dict[str, str] = {}
        layout = QVBoxLayout(self)
        controls = QHBoxLayout()
        controls.addWidget(QLabel("Colour:"))
        self.colour_combo = QComboBox()
        for label, _, _ in COLOURINGS:
            self.colour_combo.addItem(label)
        self.colour_combo.currentIndexChanged.connect(lambda _i: self._draw_grid())
        controls.addWidget(self.colour_combo)
        controls.addStretch(1)
        layout.addLayout(controls)
        # Folds to one elided line (full text in its tooltip) in a short dock, where the grid needs the rows.
        self.status = CompactLabel(_EMPTY)
        layout.addWidget(self.status)

        splitter = QSplitter(Qt.Orientation.Horizontal)
        self.grid = self.link_position_map(Heatmap(title="Top token by layer and position",
                                                   row_title="layer", col_title="position"))
        self.grid.setMinimumSize(320, 190)
        # Position labels rotate when they do not all fit side by side: every position is named.
        self.grid.set_rotated_col_labels("auto")
        self.grid.set_hover_text(self._describe_cell)
        splitter.addWidget(self.grid)

        # Two lines: one would be wider than the narrow pane and push the plot out of it.
        # Never narrower than its plot (title, axes), so the splitter cannot cut it at the right edge.
        self.lens_view = FittedPlotWidget(title="Logit difference lens<br>(at END)")
        self.lens_view.setMenuEnabled(False)
        self.lens_view.hideButtons()
        self.lens_view.setMouseEnabled(x=False, y=False)
        self.lens_view.invertY(True)
        self.lens_view.showGrid(x=True, y=True, alpha=0.2)
        self.lens_view.setLabel("bottom", "logit difference")
        self.lens_view.getAxis("bottom").enableAutoSIPrefix(False)
        self.lens_view.addItem(pg.InfiniteLine(pos=0, angle=90, pen=pg.mkPen(QColor(128, 128, 128), width=1)))
        self.lens_mean = self.lens_view.plot([], [], pen=pg.mkPen(SERIES_COLORS[0], width=2.5), symbol="o",
                                             symbolSize=6, symbolBrush=SERIES_COLORS[0], name="mean over prompts")
        self.lens_prompt = self.lens_view.plot([], [], pen=pg.mkPen(SERIES_COLORS[1], width=1.5,
                                                                    style=Qt.PenStyle.DashLine),
                                               name="selected prompt")
        # Bottom left: the lens rises from about 0 in early layers (top) to the answer's logit
        # difference at the end (bottom right), so that corner is usually free of lines.
        self.lens_legend = self.lens_view.addLegend(offset=(5, -5), labelTextSize="8pt")
        self.lens_legend.addItem(self.lens_mean, "mean over prompts")
        self.lens_legend.addItem(self.lens_prompt, "selected prompt")
        splitter.addWidget(self.lens_view)
        splitter.setSizes([700, 300])
        layout.addWidget(splitter, 1)
        self.apply_theme()

    # ---------------------------------------------------------------- data

    def _array(self, name: str) -> np.ndarray | None:
        """Rows streamed by a run in progress, else the finished results."""
        if name in self._partial:
            return self._partial[name]
        return self.results.array(name) if self.results is not None else None

    def _prompt(self) -> int:
        ids = self._array("logit_lens_grid_top_ids")
        n_prompts = ids.shape[1] if ids is not None else 1
        return min(self.selection.prompt, n_prompts - 1)

    def _length(self, prompt: int, width: int) -> int:
        """The prompt's length in tokens (padding positions are never shown), from the results or,
        while a run streams rows, from the run's metadata."""
        view = self.view()
        if view is not None:
            lengths = view.meta_of("logit_lens_grid_top_ids", "lengths") if self.results is not None else None
            if not isinstance(lengths, list):
                lengths = view.meta("lengths")
            if isinstance(lengths, list) and prompt < len(lengths):
                return min(int(lengths[prompt]), width)
            tokens = view.tokens(prompt)
            if tokens:
                return min(len(tokens), width)
        return width

    def _token_text(self, token_id: int) -> str:
        texts = self.results.meta_of("logit_lens_grid_top_ids", "token_text") if self.results is not None else None
        if isinstance(texts, Mapping) and str(int(token_id)) in texts:
            return str(texts[str(int(token_id))])
        # Streamed rows: the run's tokenizer names the ids (decoded once per distinct id).
        key = str(int(token_id))
        if key not in self._streamed_text and self._store is not None:
            self._streamed_text.update(self._store.token_text(np.asarray([int(token_id)])))
        return self._streamed_text.get(key, "?")

    def _row_labels(self, n_rows: int) -> list[str]:
        """Grid rows "0 pre", ..., "final post" (the results' labels, else the same names from core)."""
        labels = None
        if self.results is not None:
            labels = self.results.axis_labels("logit_lens_grid_top_ids", 0)
        if labels is None or len(labels) < n_rows:
            labels = [label for label, _ in logit_lens.grid_point_names(max(0, n_rows - 1))]
        return [label.replace("_", " ") for label in labels[:n_rows]]

    def grid_values(self) -> tuple[np.ndarray, np.ndarray, bool] | None:
        """(colour values [layer, pos], top token ids [layer, pos], signed) of the selected prompt."""
        ids = self._array("logit_lens_grid_top_ids")
        _, name, signed = COLOURINGS[self.colour_combo.currentIndex()]
        values = self._array(name)
        if ids is None or values is None:
            return None
        prompt = self._prompt()
        n = self._length(prompt, ids.shape[2])
        rows = min(ids.shape[0], values.shape[0])
        values = values[:rows, prompt, :n]
        if values.ndim == 3:
            values = values[..., 0]
        return values, ids[:rows, prompt, :n, 0], signed

    def render_results(self) -> None:
        if self._array("logit_lens_grid_top_ids") is None and self._array("logit_lens_logit_diff") is None:
            self.clear_views()
            self.status.setText("These results have no logit lens; run the logit lens analysis.")
            return
        self._draw_grid()
        self._draw_lens()

    def render_rows(self, array_name: str, grid: np.ndarray) -> None:
        # Rows of a colouring not shown now change nothing on screen.
        shown = COLOURINGS[self.colour_combo.currentIndex()][1]
        if array_name in ("logit_lens_grid_top_ids", shown):
            self._draw_grid()

    def clear_views(self) -> None:
        self._streamed_text = {}
        self.grid.clear_data()
        self.lens_mean.setData([], [])
        self.lens_prompt.setData([], [])
        self.status.setText(_EMPTY)

    def _draw_grid(self) -> None:
        found = self.grid_values()
        if found is None:
            self.grid.clear_data()
            return
        values, ids, signed = found
        prompt = self._prompt()
        view = self.view()
        tokens = view.tokens(prompt) if view is not None else []
        roles = view.roles(prompt) if view is not None else {}
        cols = axis_position_labels(None, tokens, values.shape[1], roles)
        levels = None if signed else (0.0, 1.0)
        self.grid.set_titles(f"Top token, {GRID_NOTE} — prompt {prompt}", "layer", "position")
        self.grid.set_data(values, self._row_labels(values.shape[0]), cols, signed=signed, levels=levels,
                           value_format="{:+.3g}" if signed else "{:.2f}")
        # While rows stream in, rows not computed yet are NaN (ids included): no text there.
        known = np.isfinite(ids) & (np.nan_to_num(ids, nan=-1) >= 0) & np.isfinite(values)
        self.grid.set_cell_text([[short_token(self._token_text(int(i)), width=24) if ok else "" for i, ok in zip(id_row, ok_row)]
                                 for id_row, ok_row in zip(ids, known)])
        self.update_selection(self.selection.current, frozenset())
        label = COLOURINGS[self.colour_combo.currentIndex()][0].lower()
        text = (f"Prompt {prompt}: each cell shows the most likely next token read from that layer's residual "
                f"stream; colour = {label}.")
        end = min(roles.get("END", values.shape[1] - 1), values.shape[1] - 1)
        finished = np.flatnonzero(known[:, end])
        if finished.size == values.shape[0]:
            text += f" The final prediction at END is {self._token_text(int(ids[-1, end]))!r}."
            text += " " + self.lens_note()
        elif self.cancelled_at is not None:
            text += f" Cancelled at {self.cancelled_at}: {finished.size} of {values.shape[0]} rows computed."
        else:
            text += " Computing…"
        self.status.setText(text)
        # A hover line describes a cell of the prompt shown now, never one of the previous prompt.
        self.grid.hover_label.setText(" ")

    def _draw_lens(self) -> None:
        mean = self._array("logit_lens_logit_diff")
        if mean is None:
            self.lens_mean.setData([], [])
            self.lens_prompt.setData([], [])
            return
        labels = self.results.axis_labels("logit_lens_logit_diff", 0) or [str(i) for i in range(len(mean))]
        labels = [label.replace("_", " ") for label in labels]
        self.lens_view.setTitle(self.lens_title())
        positions = np.arange(len(mean), dtype=np.float64)
        self.lens_mean.setData(mean.astype(np.float64), positions)
        by_prompt = self._array("logit_lens_logit_diff_by_prompt")
        shown = [mean.astype(np.float64)]
        if by_prompt is not None and self._prompt() < by_prompt.shape[0]:
            shown.append(by_prompt[self._prompt()].astype(np.float64))
            self.lens_prompt.setData(shown[-1], positions)
        # Both lines and zero in view (auto-range can lag behind the second line's data).
        values = np.concatenate([v[np.isfinite(v)] for v in shown] + [np.zeros(1)])
        low, high = float(values.min()), float(values.max())
        pad = 0.06 * ((high - low) or 1.0)
        self.lens_view.setXRange(low - pad, high + pad, padding=0)
        ticks = tick_labels(labels, max_ticks=30)
        self.lens_view.getAxis("left").setTicks([ticks])
        fit_axis(self.lens_view.getAxis("left"), [label for _, label in ticks])
        self.lens_view.setYRange(-0.5, len(mean) - 0.5, padding=0)

    def lens_note(self) -> str:
        """One sentence on how grid and lens apply the final LayerNorm."""
        norm = self.results.meta_of("logit_lens_logit_diff", "lens_norm") if self.results is not None else None
        how = ("scales every point by the final LayerNorm's cached scale, as the notebook does"
               if norm == "cached_final" else "recomputes LayerNorm at each point")
        return f"The grid recomputes LayerNorm in every cell (the standard logit lens); the lens plot {how}."

    def lens_title(self) -> str:
        """The lens plot's title, naming how the final LayerNorm was applied (older results: recomputed)."""
        norm = self.results.meta_of("logit_lens_logit_diff", "lens_norm") if self.results is not None else None
        return LENS_TITLES.get(norm if isinstance(norm, str) else "recompute", LENS_TITLES["recompute"])

    def _describe_cell(self, row: int, col: int, value: float) -> str:
        prompt = self._prompt()
        view = self.view()
        tokens = view.tokens(prompt) if view is not None else []
        ids = self._array("logit_lens_grid_top_ids")
        probs = self._array("logit_lens_grid_top_probs")
        where = f"{self.grid.row_label(row)}, position {col}"
        if col < len(tokens):
            where += f" {tokens[col]!r}"
        if ids is None or probs is None or row >= min(ids.shape[0], probs.shape[0]):
            return f"{where}: not computed yet"
        top = ", ".join(f"{self._token_text(int(i))!r} {float(p):.2f}"
                        for i, p in zip(ids[row, prompt, col], probs[row, prompt, col]) if np.isfinite(i) and i >= 0)
        if not top:
            return f"{where}: not computed yet"
        diff = self._array("logit_lens_grid_logit_diff")
        text = f"{where} → {top}"
        if diff is not None and row < diff.shape[0]:
            text += f"; logit diff {float(diff[row, prompt, col]):+.3g}"
        return text

    def update_selection(self, selection: Selection, changed: frozenset) -> None:
        if "prompt" in changed:
            self._draw_grid()
            if self.results is not None:
                self._draw_lens()
            return
        super().update_selection(selection, changed)

    def apply_theme(self) -> None:
        background, foreground = theme_colors(self)
        self.lens_view.setBackground(background)
        for side in ("left", "bottom"):
            self.lens_view.getAxis(side).setPen(pg.mkPen(foreground))
            self.lens_view.getAxis(side).setTextPen(pg.mkPen(foreground))
        item = self.lens_view.getPlotItem()
        item.titleLabel.setAttr("color", foreground)
        item.setTitle(item.titleLabel.text)
        set_legend_text_color(self.lens_legend, foreground)

    # ------------------------------------------------------------- export
    def figures(self) -> list[tuple[str, QWidget]]:
        found: list[tuple[str, QWidget]] = []
        if self.grid_values() is not None:
            found.append((f"grid_prompt{self._prompt()}", self.grid))
        if self._array("logit_lens_logit_diff") is not None:
            found.append(("logit_diff_lens", self.lens_view))
        return found

    def tables(self) -> list[tuple[str, Callable[[Path], Path]]]:
        found = []
        grid = self.grid_values()
        if grid is not None:
            values, ids, _ = grid
            prompt = self._prompt()
            tokens = self.results.tokens(prompt) if self.results is not None else []
            cols = [f"{i}: {tokens[i] if i < len(tokens) else ''}" for i in range(values.shape[1])]
            rows = self._row_labels(values.shape[0])
            texts = np.array([[self._token_text(int(i)) for i in row] for row in ids], dtype=object)
            found.append((f"grid_prompt{prompt}_values",
                          lambda path: export_grid_csv(path, values, rows, cols, "layer")))
            found.append((f"grid_prompt{prompt}_top_tokens",
                          lambda path: export_grid_csv(path, texts, rows, cols, "layer")))
        mean = self._array("logit_lens_logit_diff")
        if mean is not None:
            labels = self.results.axis_labels("logit_lens_logit_diff", 0) or [str(i) for i in range(len(mean))]
            found.append(("logit_diff_lens", lambda path: export_table_csv(
                path, ["point", "mean_logit_difference"], zip(labels, mean.tolist()))))
        return found
