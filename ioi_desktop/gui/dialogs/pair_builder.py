"""The pair builder dialog: IOI prompt pairs from templates, with a live preview.

A form over ``core.pairs.build_pairs``: template family, number of pairs N,
corruption scheme, seed, the symmetric option, the word lists (editable, one
word per line, starting from the IOI paper's lists) and, for the ``custom``
family, the user's own templates. Every change rebuilds the set shortly
after the user stops typing; the preview shows the pairs, how many names were
rejected for this model's tokenizer (and why), and how many drawn pairs were
rejected. OK hands the set to the prompt editor.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ioi_desktop.core.errors import IOIError
from ioi_desktop.core.pairs import CORRUPTIONS, FAMILIES, BuilderSettings, BuildReport, WordLists, build_pairs, default_word_lists
from ioi_desktop.core.prompts import PromptSet

PREVIEW_ROWS = 200
_REBUILD_DELAY_MS = 300
_WORD_LISTS = ("names", "places", "objects", "animals")
_EXAMPLE_TEMPLATE = "When [B] and [A] went to the [PLACE], [B] gave a [OBJECT] to [A]"


class PairBuilderDialog(QDialog):
    """Build a prompt set; ``prompt_set()`` after ``accepted``."""

    def __init__(self, tokenizer: Any, parent: QWidget | None = None, n_ctx: int | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Build IOI prompt pairs")
        self.setObjectName("pair_builder")
        self.tokenizer = tokenizer
        self.n_ctx = n_ctx
        self.report: BuildReport | None = None

        self.family_combo = QComboBox()
        for name, doc in FAMILIES.items():
            self.family_combo.addItem(name, name)
            self.family_combo.setItemData(self.family_combo.count() - 1, doc, Qt.ToolTipRole)
        self.n_spin = QSpinBox()
        self.n_spin.setRange(1, 5000)
        self.n_spin.setValue(8)
        self.corruption_combo = QComboBox()
        for name, doc in CORRUPTIONS.items():
            self.corruption_combo.addItem(name, name)
            self.corruption_combo.setItemData(self.corruption_combo.count() - 1, doc, Qt.ToolTipRole)
        self.seed_spin = QSpinBox()
        self.seed_spin.setRange(0, 2**31 - 1)
        self.symmetric_check = QCheckBox("Symmetric (each pair also with IO and S exchanged)")
        self.family_doc = QLabel()
        self.family_doc.setWordWrap(True)
        self.corruption_doc = QLabel()
        self.corruption_doc.setWordWrap(True)
        form = QFormLayout()
        form.addRow("Template family", self.family_combo)
        form.addRow("", self.family_doc)
        form.addRow("Pairs (N)", self.n_spin)
        form.addRow("Corruption", self.corruption_combo)
        form.addRow("", self.corruption_doc)
        form.addRow("Seed", self.seed_spin)
        form.addRow("", self.symmetric_check)

        defaults = default_word_lists()
        self.word_edits: dict[str, QPlainTextEdit] = {}
        word_tabs = QTabWidget()
        for name in _WORD_LISTS:
            edit = QPlainTextEdit("\n".join(getattr(defaults, name)))
            edit.setToolTip(f"One {name[:-1]} per line")
            self.word_edits[name] = edit
            word_tabs.addTab(edit, name.capitalize())
        self.templates_edit = QPlainTextEdit(_EXAMPLE_TEMPLATE)
        self.templates_edit.setToolTip(
            "One template per line: [A] is the indirect object (the answer, last), [B] the subject (at least "
            "twice), [C] a third name, [PLACE] and [OBJECT] words from the lists."
        )
        word_tabs.addTab(self.templates_edit, "Custom templates")
        self.word_tabs = word_tabs

        settings_box = QWidget()
        settings_layout = QVBoxLayout(settings_box)
        settings_layout.addLayout(form)
        settings_layout.addWidget(QLabel("Word lists and templates"))
        settings_layout.addWidget(word_tabs, 1)

        self.counts_label = QLabel()
        self.counts_label.setWordWrap(True)
        self.counts_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.preview = QTableWidget(0, 4)
        self.preview.setHorizontalHeaderLabels(["Clean prompt", "Corrupted prompt", "Correct", "Incorrect"])
        self.preview.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.preview.setAlternatingRowColors(True)
        header = self.preview.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.Stretch)
        header.setSectionResizeMode(1, QHeaderView.Stretch)
        header.setSectionResizeMode(2, QHeaderView.ResizeToContents)
        header.setSectionResizeMode(3, QHeaderView.ResizeToContents)
        self.rejected_label = QLabel()
        self.rejected_label.setWordWrap(True)
        self.rejected_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        preview_box = QWidget()
        preview_layout = QVBoxLayout(preview_box)
        preview_layout.addWidget(self.counts_label)
        preview_layout.addWidget(self.preview, 1)
        preview_layout.addWidget(self.rejected_label)

        splitter = QSplitter(Qt.Horizontal)
        splitter.addWidget(settings_box)
        splitter.addWidget(preview_box)
        splitter.setStretchFactor(1, 2)
        self.buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        self.buttons.button(QDialogButtonBox.Ok).setText("Use these pairs")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(splitter, 1)
        buttons_row = QHBoxLayout()
        buttons_row.addStretch(1)
        buttons_row.addWidget(self.buttons)
        layout.addLayout(buttons_row)
        self.resize(1200, 700)

        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(_REBUILD_DELAY_MS)
        self._timer.timeout.connect(self.rebuild)
        for signal in (self.family_combo.currentIndexChanged, self.n_spin.valueChanged,
                       self.corruption_combo.currentIndexChanged, self.seed_spin.valueChanged,
                       self.symmetric_check.toggled):
            signal.connect(self._schedule)
        for edit in (*self.word_edits.values(), self.templates_edit):
            edit.textChanged.connect(self._schedule)
        self.rebuild()

    def settings(self) -> BuilderSettings:
        """The builder settings the form describes."""
        family = self.family_combo.currentData()
        lists = {name: tuple(line.strip() for line in edit.toPlainText().splitlines() if line.strip())
                 for name, edit in self.word_edits.items()}
        templates = ()
        if family == "custom":
            templates = tuple(line.strip() for line in self.templates_edit.toPlainText().splitlines() if line.strip())
        return BuilderSettings(
            family=family,
            n=self.n_spin.value(),
            corruption=self.corruption_combo.currentData(),
            seed=self.seed_spin.value(),
            symmetric=self.symmetric_check.isChecked(),
            word_lists=WordLists(**lists),
            templates=templates,
        )

    def prompt_set(self) -> PromptSet | None:
        """The built set (None if the current settings build nothing)."""
        if self._timer.isActive():
            self.rebuild()
        return self.report.prompt_set if self.report is not None else None

    def rebuild(self) -> None:
        """Build now with the current settings and refresh the preview."""
        self._timer.stop()
        self.family_doc.setText(FAMILIES[self.family_combo.currentData()])
        self.corruption_doc.setText(CORRUPTIONS[self.corruption_combo.currentData()])
        self.templates_edit.setEnabled(self.family_combo.currentData() == "custom")
        try:
            self.report = build_pairs(self.settings(), self.tokenizer, self.n_ctx)
        except IOIError as error:
            self.report = None
            self._show_error(error)
            return
        self._show_report(self.report)

    def _schedule(self) -> None:
        self._timer.start()

    def _show_error(self, error: IOIError) -> None:
        self.preview.setRowCount(0)
        self.counts_label.setText(f"<span style='color:#d32f2f'><b>{error.message}</b></span><br>{error.hint}")
        self.rejected_label.setText("")
        self.buttons.button(QDialogButtonBox.Ok).setEnabled(False)

    def _show_report(self, report: BuildReport) -> None:
        pairs = report.prompt_set.pairs
        self.preview.setRowCount(min(len(pairs), PREVIEW_ROWS))
        for row, pair in enumerate(pairs[:PREVIEW_ROWS]):
            for column, text in enumerate((pair.clean, pair.corrupt, pair.correct, pair.incorrect)):
                self.preview.setItem(row, column, QTableWidgetItem(text))
        self.preview.setVerticalHeaderLabels([str(row) for row in range(self.preview.rowCount())])
        shown = f" (first {PREVIEW_ROWS} shown)" if len(pairs) > PREVIEW_ROWS else ""
        n_names = len(self.settings().word_lists.names)
        self.counts_label.setText(
            f"<b>{len(pairs)} pairs</b>{shown}. Names: {n_names - len(report.rejected_names)} usable, "
            f"<b>{len(report.rejected_names)} rejected</b> for this model's tokenizer. "
            f"Drawn pairs rejected: <b>{report.rejected_pair_count}</b>."
        )
        details = []
        if report.rejected_names:
            listed = ", ".join(f"{r.name} ({r.reason})" for r in report.rejected_names[:12])
            more = f", … {len(report.rejected_names) - 12} more" if len(report.rejected_names) > 12 else ""
            details.append(f"Rejected names: {listed}{more}.")
        if report.rejected_pairs:
            example = report.rejected_pairs[0]
            details.append(f"Example rejected pair: “{example.clean}” — {example.reason}")
        self.rejected_label.setText("\n".join(details))
        self.buttons.button(QDialogButtonBox.Ok).setEnabled(bool(pairs))
