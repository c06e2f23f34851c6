"""Path patching: which heads feed which heads' queries, keys and values, and the logits.

Grids (layer x head, normalized like the other patching grids) for each
receiver input computed: over receiver heads for the forward question (the
senders' write reaching only that head's q, k or v), over sender heads for
the reverse question (each earlier head into the one receiver). The last grid
is each head's direct path to the logits. Under grouped- or multi-query
attention the forward question's k and v grids are per key-value head
(columns labelled like 'KV0 (H0-H1)', the query heads that share it); they
are not linked to the head selection, since a column is not one head. "Path patch from the selected head"
and "into the selected head" ask the window to run the analysis
(``run_requested``). Clicking a cell selects that head everywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
from PySide6.QtWidgets import QHBoxLayout, QPushButton, QVBoxLayout, QWidget

from ioi_desktop.core.analyses import path_patching
from ioi_desktop.gui.panels.result_panel import ResultPanel
from ioi_desktop.gui.widgets.compact_label import CompactLabel
from ioi_desktop.gui.widgets.export import export_grid_csv

GRIDS = (
    ("path_patch_q", "into q"),
    ("path_patch_k", "into k"),
    ("path_patch_k_kv", "into k (per key-value head)"),
    ("path_patch_v", "into v"),
    ("path_patch_v_kv", "into v (per key-value head)"),
    ("path_patch_logits", "each head → logits"),
)
# Grids over key-value heads (grouped-/multi-query attention): labelled by result.kv_head_labels.
KV_GRIDS = ("path_patch_k_kv", "path_patch_v_kv")


def column_labels(result, name: str, n_cols: int) -> list[str]:
    """A grid's column labels: 'KV0 (H0-H1)', ... for the key-value-head grids, else the head index."""
    kv = list(result.kv_head_labels or ()) if name in KV_GRIDS else []
    return kv[:n_cols] if len(kv) >= n_cols else [str(i) for i in range(n_cols)]


class PathPatchingPanel(ResultPanel):
    TITLE = "Path patching"
    RESULTS = (path_patching.Result,)
    STREAMED = ("path_patch_q", "path_patch_k", "path_patch_v", "path_patch_k_kv", "path_patch_v_kv")
    INLINE_ROLE_LEGEND = False

    def __init__(self, selection, parent: QWidget | None = None) -> None:
        super().__init__(selection, parent)
        layout = QVBoxLayout(self)
        actions = QHBoxLayout()
        self.from_button = QPushButton("Path patch from the selected head")
        self.from_button.setObjectName("path_patch_from")
        self.from_button.clicked.connect(self.request_from_selected)
        self.into_button = QPushButton("… into the selected head")
        self.into_button.setObjectName("path_patch_into")
        self.into_button.clicked.connect(self.request_into_selected)
        actions.addWidget(self.from_button)
        actions.addWidget(self.into_button)
        actions.addStretch(1)
        actions.addWidget(self.roles_checkbox)
        layout.addLayout(actions)
        self.status = CompactLabel("Select a head and path-patch from it or into it.")
        layout.addWidget(self.status)
        self.heatmaps = self.add_head_maps(layout, GRIDS, min_size=160, stretch=1)
        for name in KV_GRIDS:
            # A key-value head's column is a group of query heads: no head selection, roles or head menu.
            heatmap = self.heatmaps[name]
            for signal in (heatmap.cell_clicked, heatmap.cell_ctrl_clicked, heatmap.cell_menu_requested):
                signal.disconnect()
            self._head_maps.remove(heatmap)
            heatmap.set_titles(dict(GRIDS)[name], "layer", "key-value head")
            heatmap.set_hover_text(None)
            heatmap.setVisible(False)

    def _selected(self) -> str | None:
        layer, head = self.selection.layer, self.selection.head
        if layer is None or head is None:
            self.status.setText("Select a head first (click it in any head map).")
            return None
        return f"{layer}.{head}"

    def request_from_selected(self) -> None:
        head = self._selected()
        if head is not None:
            self.run_requested.emit(path_patching.NAME, {"senders": head, "receiver_head": "",
                                                         "receivers": ["q", "k", "v", "logits"]})

    def request_into_selected(self) -> None:
        head = self._selected()
        if head is not None:
            self.run_requested.emit(path_patching.NAME, {"receiver_head": head, "receivers": ["q", "k", "v"]})

    def render_results(self) -> None:
        result = None if self.results is None else self.results.result(path_patching.Result)
        if result is None:
            self.clear_views()
            return
        for name, title in GRIDS:
            values = result.arrays.get(name)
            # Grids this run did not compute are hidden, not shown empty.
            self.heatmaps[name].setVisible(values is not None)
            if values is None:
                self.heatmaps[name].clear_data()
                continue
            if name in KV_GRIDS:
                self.heatmaps[name].set_data(values, [str(i) for i in range(values.shape[0])],
                                             column_labels(result, name, values.shape[1]), signed=True,
                                             value_format="{:+.3g}")
            else:
                self.heatmaps[name].set_data(values, signed=True, value_format="{:+.3g}")
        self.status.setText(summary(result))

    def render_rows(self, array_name: str, grid: np.ndarray) -> None:
        if array_name in self.heatmaps:
            self.heatmaps[array_name].setVisible(True)
            self.heatmaps[array_name].set_data(grid, signed=True, value_format="{:+.3g}")
            self.status.setText("Path patching…")

    def clear_views(self) -> None:
        for name, heatmap in self.heatmaps.items():
            heatmap.clear_data()
            heatmap.setVisible(name not in KV_GRIDS)
        self.status.setText("Select a head and path-patch from it or into it.")

    def figures(self) -> list[tuple[str, QWidget]]:
        result = None if self.results is None else self.results.result(path_patching.Result)
        return [("all", self)] if result is not None else []

    def tables(self) -> list[tuple[str, Callable[[Path], Path]]]:
        result = None if self.results is None else self.results.result(path_patching.Result)
        found = []
        for name, _title in GRIDS:
            values = None if result is None else result.arrays.get(name)
            if values is not None:
                layers = [str(i) for i in range(values.shape[0])]
                heads = ([f"key-value head {c}" for c in column_labels(result, name, values.shape[1])]
                         if name in KV_GRIDS else [f"head {i}" for i in range(values.shape[1])])
                found.append((name, lambda path, v=values, r=layers, c=heads: export_grid_csv(path, v, r, c, "layer")))
        return found


def summary(result) -> str:
    """The question asked and the strongest cell of each grid."""
    if result.question == "reverse":
        layer, head = result.receiver_head
        text = f"Which heads feed L{layer}H{head} (grids over senders)."
        if result.receiver_kv_head:
            kv = result.receiver_kv_head[1]
            labels = list(result.kv_head_labels or ())
            text += (f" Its k and v are those of key-value head {labels[kv] if kv < len(labels) else f'KV{kv}'}, "
                     "shared by its group (grouped-query attention).")
    else:
        senders = ", ".join(f"L{l}H{h}" for l, h in result.senders or [])
        text = f"{result.preset + ': ' if result.preset else ''}paths from {senders} (grids over receivers)."
    strongest = []
    for name, title in GRIDS:
        values = result.arrays.get(name)
        if values is not None and values.size:
            layer, head = np.unravel_index(int(np.abs(values).argmax()), values.shape)
            cell = (f"L{layer} {column_labels(result, name, values.shape[1])[head]}" if name in KV_GRIDS
                    else f"L{layer}H{head}")
            strongest.append(f"{title}: {cell} {values[layer, head]:+.3g}")
    return text + (" Strongest — " + "; ".join(strongest) + "." if strongest else "")
