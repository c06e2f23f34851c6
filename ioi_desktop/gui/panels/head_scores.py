"""Head types: previous-token, duplicate-token and induction scores of every head.

Each score is the head's average attention to the key a head of that type
would attend to, measured on repeated random tokens (as in TransformerLens's
demo), so all three grids share one sequential colour scale from 0 to 1.
Clicking a head selects it everywhere. A hybrid's grids have its attention
layers only, each row labelled with its real layer index. A note under the grids says how the
sequences were made (from the result's meta) and why a model trained on short
texts scores lower than on its own prompts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
from PySide6.QtWidgets import QHBoxLayout, QVBoxLayout, QWidget

from ioi_desktop.core.analyses import head_scores
from ioi_desktop.core.grids import strongest_cell
from ioi_desktop.gui.panels.result_panel import ResultPanel
from ioi_desktop.gui.widgets.compact_label import CompactLabel
from ioi_desktop.gui.widgets.export import export_grid_csv

SCORES = (
    ("head_score_prev", "Previous-token score"),
    ("head_score_dup", "Duplicate-token score"),
    ("head_score_induction", "Induction score"),
)


_MIN_PEAK = 0.05


class HeadScoresPanel(ResultPanel):
    TITLE = "Head scores"
    RESULTS = (head_scores.Result,)
    STREAMED = tuple(name for name, _ in SCORES)
    INLINE_ROLE_LEGEND = False

    def __init__(self, selection, parent: QWidget | None = None) -> None:
        super().__init__(selection, parent)
        layout = QVBoxLayout(self)
        top = QHBoxLayout()
        self.status = CompactLabel("Run the head-scores analysis to see each head's type.")
        top.addWidget(self.status, 1)
        top.addWidget(self.roles_checkbox)
        layout.addLayout(top)
        self.note = CompactLabel("")
        self.note.setObjectName("head_scores_note")
        layout.addWidget(self.note)
        self.heatmaps = self.add_head_maps(layout, SCORES)

    def _levels(self, values: np.ndarray) -> tuple[tuple[float, float], bool]:
        """0 to the largest score shown (at least 0.05), so weak heads on a short-text model still show:
        a fixed 0-1 scale paints every cell black when all scores are small. Each grid has its colour bar."""
        finite = values[np.isfinite(values)]
        if finite.size and finite.min() < 0:
            return (-1.0, 1.0), True
        peak = float(finite.max()) if finite.size else 1.0
        return (0.0, min(1.0, max(peak, _MIN_PEAK))), False

    def attention_layers(self) -> list[int] | None:
        """A hybrid's attention layers, one per grid row (None: every layer, row = layer)."""
        layers = self.results.meta_of("head_score_dup", "attention_layers") if self.results is not None else None
        return [int(layer) for layer in layers] if isinstance(layers, list) else None

    def _draw(self, name: str, values: np.ndarray) -> None:
        levels, signed = self._levels(values)
        layers = self.attention_layers()
        self.set_head_map_layers(self.heatmaps[name], layers)
        rows = [str(layer) for layer in layers] if layers and len(layers) == values.shape[0] else None
        self.heatmaps[name].set_data(values, rows, signed=signed, levels=levels, value_format="{:.3f}")

    def render_results(self) -> None:
        shown = 0
        for name, _ in SCORES:
            values = self.results.array(name)
            if values is None:
                self.heatmaps[name].clear_data()
                continue
            self._draw(name, values)
            shown += 1
        if shown:
            top = []
            for name, title in SCORES:
                values = self.results.array(name)
                if values is not None:
                    (row, head), value = strongest_cell(values, by="max")
                    layer = self.layer_of_row(self.heatmaps[name], row)
                    top.append(f"{title.split()[0].lower()}: L{layer}H{head} ({value:.2f})")
            self.status.setText("Strongest heads — " + "; ".join(top) + ". Click a head to inspect it.")
            self.note.setText(self.sequence_note())
        else:
            self.status.setText("These results have no head scores; run the head-scores analysis.")

    def sequence_note(self) -> str:
        """How the scored sequences were made, and why scores can sit below a head's attention on real prompts."""
        meta = self.results.meta_of("head_score_dup", "seq_len") if self.results is not None else None
        if not isinstance(meta, int):
            return ""
        get = lambda key: self.results.meta_of("head_score_dup", key)  # noqa: E731
        words = "distinct random word tokens" if get("token_pool") == "words" else "random token ids"
        bos = "BOS, then " if get("prepend_bos") else ""
        return (f"Scored on {bos}{meta} {words} repeated once ({get('batch')} sequences, seed {get('seed')}). "
                "A model trained on short texts scores lower the farther apart the two copies are, so a head can "
                "score below its attention on real prompts; set a shorter sequence length in Run > Options to see it.")

    def render_rows(self, array_name: str, grid: np.ndarray) -> None:
        self._draw(array_name, grid)
        self.status.setText(f"Cancelled at {self.cancelled_at}; the rows shown were computed before the cancel."
                            if self.cancelled_at is not None else "Computing head scores…")

    def clear_views(self) -> None:
        for heatmap in self.heatmaps.values():
            heatmap.clear_data()
        self.note.setText("")
        self.status.setText("Run the head-scores analysis to see each head's type.")

    def figures(self) -> list[tuple[str, QWidget]]:
        if self.results is None or all(self.results.array(name) is None for name, _ in SCORES):
            return []
        return [("all", self)]

    def tables(self) -> list[tuple[str, Callable[[Path], Path]]]:
        found = []
        for name, _ in SCORES:
            values = None if self.results is None else self.results.array(name)
            if values is not None:
                hybrid = self.attention_layers()  # a hybrid's rows are its attention layers
                layers = [str(i) for i in (hybrid if hybrid and len(hybrid) == values.shape[0]
                                           else range(values.shape[0]))]
                heads = [f"head {i}" for i in range(values.shape[1])]
                found.append((name, lambda path, v=values, r=layers, c=heads: export_grid_csv(path, v, r, c, "layer")))
        return found
