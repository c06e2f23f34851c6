"""Direct logit attribution: what each component and each head writes into the logit difference.

The bars are the residual stream's decomposition (embeddings, then each
layer's attention and MLP output) projected on the logit-difference direction
after the final LayerNorm, averaged over prompts (or for the selected
prompt); the heatmap splits every attention layer into its heads. Both are signed, so the heatmap uses the
diverging map with levels symmetric around 0 (red lowers the logit
difference, blue raises it). Clicking a head selects it everywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QSplitter, QVBoxLayout, QWidget

from ioi_desktop.core.analyses import dla
from ioi_desktop.core.grids import strongest_cell
from ioi_desktop.core.selection import Selection
from ioi_desktop.gui.panels.result_panel import ResultPanel
from ioi_desktop.gui.widgets.bar_chart import BarChart
from ioi_desktop.gui.widgets.compact_label import CompactLabel
from ioi_desktop.gui.widgets.export import export_grid_csv, export_table_csv
from ioi_desktop.gui.widgets.heatmap import Heatmap

SCOPES = ("Mean over prompts", "Selected prompt")
_EMPTY = "Run direct logit attribution to see which components and heads write the answer."


class AttributionPanel(ResultPanel):
    TITLE = "Attribution"
    RESULTS = (dla.Result,)

    def __init__(self, selection, parent: QWidget | None = None) -> None:
        super().__init__(selection, parent)
        layout = QVBoxLayout(self)
        top = QHBoxLayout()
        top.addWidget(QLabel("Prompts:"))
        self.scope_combo = QComboBox()
        self.scope_combo.addItems(SCOPES)
        self.scope_combo.setToolTip("The mean over all prompts, or only the prompt selected in the app")
        self.scope_combo.currentIndexChanged.connect(lambda _i: self._draw())
        top.addWidget(self.scope_combo)
        top.addStretch(1)
        top.addWidget(self.roles_checkbox)
        layout.addLayout(top)
        self.status = CompactLabel(_EMPTY)
        layout.addWidget(self.status)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        self.components = BarChart(title="Per component<br>(mean over prompts)", category_title="component",
                                   value_title="logit difference", horizontal=True)
        self.components.setMinimumWidth(200)
        self.heads = self.link_head_map(Heatmap(title="Per head<br>(mean over prompts)", row_title="layer",
                                                col_title="head"))
        self.heads.setMinimumWidth(240)
        splitter.addWidget(self.components)
        splitter.addWidget(self.heads)
        splitter.setSizes([380, 520])
        layout.addWidget(splitter, 1)

    def shown_arrays(self) -> tuple[np.ndarray | None, np.ndarray | None, str]:
        """(components, heads, what they average) for the chosen scope."""
        components = self.results.array("dla_components")
        heads = self.results.array("dla_head")
        if self.scope_combo.currentIndex() == 1:
            by_component = self.results.array("dla_components_by_prompt")
            by_head = self.results.array("dla_head_by_prompt")
            if by_component is not None and by_head is not None:
                prompt = min(self.selection.prompt, by_component.shape[0] - 1)
                return by_component[prompt], by_head[prompt], f"prompt {prompt}"
        return components, heads, "mean over prompts"

    def render_results(self) -> None:
        self._draw()

    def attention_layers(self, heads: np.ndarray) -> list[int] | None:
        """A hybrid's attention layers, one per row of the head grid (None: every layer, row = layer)."""
        layers = self.results.meta_of("dla_head", "attention_layers") if self.results is not None else None
        return [int(layer) for layer in layers] if isinstance(layers, list) and len(layers) == len(heads) else None

    def _draw(self) -> None:
        if self.results is None:
            return
        components, heads, scope = self.shown_arrays()
        if components is None and heads is None:
            self.clear_views()
            self.status.setText("These results have no attribution; run direct logit attribution.")
            return
        # Two lines: a one-line title is wider than a narrow pane and would push the plot out of it.
        self.components.plot.setTitle(f"Per component<br>({scope})")
        parts = []
        if components is not None:
            labels = self.results.axis_labels("dla_components", 0) or [str(i) for i in range(len(components))]
            self.components.set_bars(labels, {"logit difference": components}, by_sign=True)
            parts.append(f"components sum to {float(components.sum()):+.3g}")
        if heads is not None:
            layers = self.attention_layers(heads)
            self.set_head_map_layers(self.heads, layers)
            self.heads.set_titles(f"Per head<br>({scope})", "layer", "head")
            self.heads.set_data(heads, [str(layer) for layer in layers] if layers else None, signed=True)
            (row, head), value = strongest_cell(heads)
            layer = self.layer_of_row(self.heads, row)
            parts.append(f"strongest head L{layer}H{head} ({value:+.3g})")
        self.status.setText(f"Direct logit attribution, {scope}: " + "; ".join(parts)
                            + ". Blue raises the correct answer, red lowers it.")

    def update_selection(self, selection: Selection, changed: frozenset) -> None:
        if "prompt" in changed and self.scope_combo.currentIndex() == 1:
            self._draw()
        super().update_selection(selection, changed)

    def clear_views(self) -> None:
        self.components.set_bars([], {})
        self.heads.clear_data()
        self.status.setText(_EMPTY)

    def figures(self) -> list[tuple[str, QWidget]]:
        if self.results is None:
            return []
        found = []
        if self.results.array("dla_components") is not None:
            found.append(("components", self.components))
        if self.results.array("dla_head") is not None:
            found.append(("heads", self.heads))
        return found

    def tables(self) -> list[tuple[str, Callable[[Path], Path]]]:
        if self.results is None:
            return []
        found = []
        components, heads, scope = self.shown_arrays()
        suffix = "" if scope.startswith("mean") else f"_{scope.replace(' ', '')}"
        if components is not None:
            labels = self.results.axis_labels("dla_components", 0) or [str(i) for i in range(len(components))]
            found.append((f"components{suffix}", lambda path: export_table_csv(
                path, ["component", "logit_difference"], zip(labels, components.tolist()))))
        if heads is not None:
            rows = [str(i) for i in (self.attention_layers(heads) or range(heads.shape[0]))]  # a hybrid's real layers
            found.append((f"heads{suffix}", lambda path: export_grid_csv(
                path, heads, rows, [f"head {i}" for i in range(heads.shape[1])], "layer")))
        return found
