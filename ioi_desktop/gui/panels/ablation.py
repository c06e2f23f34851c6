"""Ablation what-if: the pinned head set, its ablation, and every head's DLA before and after.

The chip row shows the selection's pinned heads (Ctrl/Cmd-click a head in any
head heatmap to pin or unpin it; click a chip to unpin; Clear empties the set).
"Ablate pinned heads" asks the window to run the ablation analysis on that set
(``run_requested``); with no pinned head it runs the preset "Backup heads of
the strongest DLA head". The three grids are each head's DLA at END before and
after the ablation and their difference (after - before): heads that gain are
backup heads, heads that grow more negative are negative heads. Clicking a
cell selects that head everywhere.

"Live" re-runs the ablation whenever the pinned set changes: debounced
(``LIVE_DELAY_MS`` after the last change), on the worker thread like every run
(so the window stays responsive and Cancel stops it); a change that arrives
while a run is going is run once the worker is free (``worker_idle``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QCheckBox, QComboBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from ioi_desktop.core.analyses import ablation
from ioi_desktop.gui.panels.result_panel import ResultPanel
from ioi_desktop.gui.widgets.compact_label import CompactLabel
from ioi_desktop.gui.widgets.export import export_grid_csv

GRIDS = (
    ("ablation_dla_head_before", "DLA before"),
    ("ablation_dla_head_after", "DLA after ablation"),
    ("ablation_dla_head_change", "After − before"),
)


POSITION_CHOICES = ("end", "all", "IO", "S1", "S2")


class PinnedChips(QWidget):
    """The pinned head set as chips (click one to unpin), where they are ablated, and a Clear button."""

    def __init__(self, selection, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.selection = selection
        self.row = QHBoxLayout(self)
        self.row.setContentsMargins(0, 0, 0, 0)
        self.label = QLabel("Pinned:")
        self.row.addWidget(self.label)
        self.chips: list[QPushButton] = []
        self.clear_button = QPushButton("Clear")
        self.clear_button.setObjectName("clear_pinned")
        self.clear_button.clicked.connect(lambda: self.selection.clear_pinned())
        self.row.addStretch(1)
        self.row.addWidget(QLabel("at:"))
        self.positions_combo = QComboBox()
        self.positions_combo.setObjectName("pinned_positions")
        self.positions_combo.setEditable(True)  # any role the prompts have, e.g. S1+1
        self.positions_combo.addItems(list(POSITION_CHOICES))
        self.positions_combo.setToolTip("Where the pinned heads are ablated: every position, END only, or one "
                                        "named role (shared by every view, saved in sessions)")
        self.positions_combo.setCurrentText(selection.pinned_positions)
        self.positions_combo.currentTextChanged.connect(self._on_positions_edited)
        self.row.addWidget(self.positions_combo)
        self.row.addWidget(self.clear_button)
        selection.subscribe(self._on_selection)
        self.refresh()

    def _on_positions_edited(self, text: str) -> None:
        if text.strip():
            self.selection.set_pinned_positions(text)

    def _on_selection(self, _selection, changed) -> None:
        if "pinned" in changed:
            self.refresh()
        if "pinned_positions" in changed and self.positions_combo.currentText() != self.selection.pinned_positions:
            self.positions_combo.setCurrentText(self.selection.pinned_positions)

    def refresh(self) -> None:
        for chip in self.chips:
            self.row.removeWidget(chip)
            chip.deleteLater()
        self.chips = []
        for index, (layer, head) in enumerate(self.selection.pinned):
            chip = QPushButton(f"L{layer}H{head} ×")
            chip.setObjectName(f"pinned_chip_{layer}_{head}")
            chip.setToolTip("Unpin this head")
            chip.setFlat(True)
            chip.clicked.connect(lambda _=False, l=layer, h=head: self.selection.toggle_pin(l, h))
            self.row.insertWidget(1 + index, chip)
            self.chips.append(chip)
        self.label.setText("Pinned:" if self.chips else "Pinned: none (Ctrl/Cmd-click heads in any head map)")
        self.clear_button.setEnabled(bool(self.chips))

    def texts(self) -> list[str]:
        return [chip.text() for chip in self.chips]


LIVE_DELAY_MS = 400


class AblationPanel(ResultPanel):
    TITLE = "Ablation"
    RESULTS = (ablation.Result,)
    INLINE_ROLE_LEGEND = False

    def __init__(self, selection, parent: QWidget | None = None) -> None:
        super().__init__(selection, parent)
        layout = QVBoxLayout(self)
        self.chips = PinnedChips(selection)
        layout.addWidget(self.chips)
        actions = QHBoxLayout()
        self.ablate_button = QPushButton("Ablate pinned heads")
        self.ablate_button.setObjectName("ablate_pinned")
        self.ablate_button.setToolTip("Ablate the pinned heads at the positions chosen beside them (no pinned "
                                      "head: the backup preset, the head with the largest DLA); the method is in "
                                      "Run > Options")
        self.ablate_button.clicked.connect(self.request_ablation)
        actions.addWidget(self.ablate_button)
        self.live_check = QCheckBox("Live")
        self.live_check.setObjectName("ablation_live")
        self.live_check.setToolTip("Re-run the ablation whenever the pinned set changes")
        actions.addWidget(self.live_check)
        actions.addStretch(1)
        actions.addWidget(self.roles_checkbox)
        layout.addLayout(actions)
        self.status = CompactLabel("Pin heads and press Ablate, or run the ablation analysis.")
        layout.addWidget(self.status)
        self.heatmaps = self.add_head_maps(layout, GRIDS, stretch=1)
        self._live_timer = QTimer(self)
        self._live_timer.setSingleShot(True)
        self._live_timer.setInterval(LIVE_DELAY_MS)
        self._live_timer.timeout.connect(self.request_ablation)
        self._live_pending = False
        selection.subscribe(self._on_pinned_changed)

    def request_ablation(self) -> None:
        self._live_pending = False
        self.run_requested.emit(ablation.NAME, {"heads": self.selection.pinned_text(),
                                                "positions": self.selection.pinned_positions})

    def _on_pinned_changed(self, _selection, changed) -> None:
        if {"pinned", "pinned_positions"} & changed and self.live_check.isChecked():
            self._live_pending = True
            self._live_timer.start()

    def worker_idle(self) -> None:
        """The worker is free again: run a live change that could not start while it was busy."""
        shown = None if self.results is None else self.results.result(ablation.Result)
        wanted = [list(pair) for pair in self.selection.pinned]
        stale = shown is not None and self.selection.pinned and shown.heads != wanted
        if self.live_check.isChecked() and (self._live_pending or stale) and not self._live_timer.isActive():
            self._live_timer.start()

    def grids(self) -> dict[str, np.ndarray]:
        result = None if self.results is None else self.results.result(ablation.Result)
        if result is None or result.ablation_dla_head_before is None:
            return {}
        return {name: getattr(result, name) for name, _title in GRIDS if getattr(result, name) is not None}

    def render_results(self) -> None:
        grids = self.grids()
        if not grids:
            self.clear_views()
            return
        scale = float(max(np.abs(grids["ablation_dla_head_before"]).max(),
                          np.abs(grids["ablation_dla_head_after"]).max(), 1e-6))
        for name, values in grids.items():
            self.heatmaps[name].set_data(values, signed=True, levels=(-scale, scale), value_format="{:+.3g}")
        result = self.results.result(ablation.Result)
        self.status.setText(summary(result))

    def clear_views(self) -> None:
        for heatmap in self.heatmaps.values():
            heatmap.clear_data()
        self.status.setText("Pin heads and press Ablate, or run the ablation analysis.")

    def figures(self) -> list[tuple[str, QWidget]]:
        return [("all", self)] if self.grids() else []

    def tables(self) -> list[tuple[str, Callable[[Path], Path]]]:
        found = []
        for name, values in self.grids().items():
            layers = [str(i) for i in range(values.shape[0])]
            heads = [f"head {i}" for i in range(values.shape[1])]
            found.append((name, lambda path, v=values, r=layers, c=heads: export_grid_csv(path, v, r, c, "layer")))
        return found


def summary(result) -> str:
    """One paragraph: what was ablated, the logit difference before/after, predicted vs actual drop, who compensates."""
    heads = ", ".join(f"L{l}H{h}" for l, h in result.heads or []) or "no head"
    mlps = "".join(f", MLP {l}" for l in result.mlp_layers or [])
    text = (f"{result.preset + ': ' if result.preset else ''}{result.method}-ablated {heads}{mlps} at "
            f"{result.ablated_positions}. Mean logit difference {_num(result.mean_clean)} → "
            f"{_num(result.mean_ablated)} (drop {_num(result.actual_drop)}; their DLA predicted "
            f"{_num(float(result.ablation_predicted_drop))}).")
    difference = result.ablation_dla_head_change
    gainers, losers = ablation.changed_heads(result)
    if gainers:
        text += " Compensating: " + ", ".join(f"L{l}H{h} {difference[l, h]:+.3g}" for l, h in gainers) + "."
    else:
        text += " No other head's DLA rises by more than 2% of the clean logit difference."
    if losers:
        text += " Falling: " + ", ".join(f"L{l}H{h} {difference[l, h]:+.3g}" for l, h in losers) + "."
    return text


def _num(value: float) -> str:
    """Two decimals for logit differences of everyday size, three significant digits for tiny ones."""
    return f"{value:.2f}" if abs(value) >= 0.1 else f"{value:.3g}"
