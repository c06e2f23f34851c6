"""Help > Reproduce the Exploratory Analysis Demo: the comparison table.

Shows a ``core.notebook_check.Comparison``: one row per published number of
the demo (step, item, published, ours, difference, PASS/FAIL), a summary
line, and the steps that were not compared and why. The numbers come from
core; this dialog only formats them.
"""

from __future__ import annotations

from PySide6.QtGui import QColor
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QHeaderView, QLabel, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget

COLUMNS = ("step", "item", "published", "ours", "difference", "result")
_PASS, _FAIL = QColor(46, 125, 50), QColor(198, 40, 40)


def _text(value) -> str:
    if value is None:
        return "missing"
    if isinstance(value, str):
        return repr(value)
    return f"{value:+.3f}"


class NotebookCheckDialog(QDialog):
    """The demo's published numbers beside ours, for the model that was checked."""

    def __init__(self, comparison, model_name: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("notebook_check_dialog")
        self.setWindowTitle("Reproduce the Exploratory Analysis Demo")
        self.comparison = comparison
        layout = QVBoxLayout(self)
        verdict = "all agree" if comparison.passed else "some differ"
        self.summary = QLabel(
            f"<b>{comparison.n_passed} of {len(comparison.rows)} published numbers agree</b> ({verdict}) on "
            f"{model_name}: |ours − published| &lt; 0.01 (2 decimals) unless a row shows its own tolerance. "
            "The panels show this run's results.")
        self.summary.setWordWrap(True)
        layout.addWidget(self.summary)
        self.table = QTableWidget(len(comparison.rows), len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.verticalHeader().hide()
        for r, row in enumerate(comparison.rows):
            result = "PASS" if row.passed else "FAIL"
            if row.tolerance != 0.01 and not isinstance(row.published, str):
                result += f" (±{row.tolerance:g})"
            diff = row.difference
            cells = (row.step, row.item, _text(row.published), _text(row.ours), "" if diff is None else f"{diff:+.3f}", result)
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if row.note:
                    item.setToolTip(row.note)
                if c == len(COLUMNS) - 1:
                    item.setForeground(_PASS if row.passed else _FAIL)
                self.table.setItem(r, c, item)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        layout.addWidget(self.table, 1)
        left = [f"Not compared: {entry.get('step')} — {entry.get('why')}." for entry in comparison.not_compared]
        self.left_out = QLabel("\n".join(left))
        self.left_out.setWordWrap(True)
        layout.addWidget(self.left_out)
        source = QLabel(f"Published numbers: {comparison.source}")
        source.setWordWrap(True)
        layout.addWidget(source)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.resize(860, 640)
