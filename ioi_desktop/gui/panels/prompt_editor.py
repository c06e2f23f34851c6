"""Prompt editor: the table of prompt pairs, live token strips, inline validation.

Each row is one pair (clean prompt, corrupted prompt, correct answer,
incorrect answer). Rows can be edited in place, added, removed and moved.
Under the table, token strips show how the model's tokenizer cuts the selected
pair's clean and corrupted prompts, with the named positions (IO, S1, S2, END)
highlighted, so a user sees at once why a name is "not a single token".

Validation is ``core.prompts.validate`` against the loaded model's tokenizer,
re-run shortly after each edit. Findings appear next to the offending pair:
the row's "Check" column says what is wrong, the offending cell is tinted and
its tooltip holds the message and the fix, and the list under the table
shows every finding (double-click jumps to the pair). ``validity_changed``
tells the window whether Run may start and, if not, why.

The selected row is the selection model's prompt, so choosing a pair here
updates the per-prompt result views and vice versa.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QScrollArea,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ioi_desktop.core.prompts import TEXT_FIELDS, Finding, PromptPair, PromptSet, token_strings, tokenize_set, to_tokens, validate
from ioi_desktop.core.errors import IOIError
from ioi_desktop.core.selection import Selection, SelectionModel
from ioi_desktop.gui.widgets.token_strip import TokenStrip

HEADERS = ("Clean prompt", "Corrupted prompt", "Correct", "Incorrect", "Check")
CHECK_COLUMN = len(TEXT_FIELDS)
_ERROR_TINT = QColor(229, 57, 53, 70)
_WARNING_TINT = QColor(251, 192, 45, 70)
_VALIDATE_DELAY_MS = 200


class PromptEditor(QWidget):
    """Edit a prompt set; emits ``prompt_set_changed`` and ``validity_changed``."""

    TITLE = "Prompts"
    prompt_set_changed = Signal()
    validity_changed = Signal(bool, str)  # ok, why not (one sentence)
    build_requested = Signal()
    import_requested = Signal()
    export_requested = Signal()

    def __init__(self, selection: SelectionModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.selection = selection
        self._pairs: list[PromptPair] = []
        self._set_meta: dict = {}
        self._tokenizer: Any = None
        self._n_ctx: int | None = None
        self._findings: list[Finding] = []
        self._valid = False
        self._reason = "Validation waits for the model's tokenizer."
        self._filling = False

        self.table = QTableWidget(0, len(HEADERS))
        self.table.setHorizontalHeaderLabels(HEADERS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        # The end of a prompt (S2 and what follows) matters as much as its start.
        self.table.setTextElideMode(Qt.ElideMiddle)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.Stretch)
        header.setSectionResizeMode(1, QHeaderView.Stretch)
        # Answers and the check mark take what they need; the prompts get the rest.
        for column in (2, 3, CHECK_COLUMN):
            header.setSectionResizeMode(column, QHeaderView.ResizeToContents)
        self.table.verticalHeader().setDefaultSectionSize(24)
        self.table.itemChanged.connect(self._on_item_changed)
        self.table.currentCellChanged.connect(self._on_current_cell_changed)

        self.add_button = QPushButton("Add")
        self.add_button.setToolTip("Add a pair after the selected one (a copy of it, to edit)")
        self.remove_button = QPushButton("Remove")
        self.up_button = QPushButton("Up")
        self.down_button = QPushButton("Down")
        self.build_button = QPushButton("Build pairs…")
        self.build_button.setToolTip("Generate pairs from IOI templates (Ctrl+B)")
        self.import_button = QPushButton("Import…")
        self.export_button = QPushButton("Export…")
        self.add_button.clicked.connect(self.add_pair)
        self.remove_button.clicked.connect(self.remove_pair)
        self.up_button.clicked.connect(lambda: self.move_pair(-1))
        self.down_button.clicked.connect(lambda: self.move_pair(+1))
        self.build_button.clicked.connect(self.build_requested)
        self.import_button.clicked.connect(self.import_requested)
        self.export_button.clicked.connect(self.export_requested)
        # Two short rows keep the dock narrow enough to leave room for the result panels.
        edit_row = QHBoxLayout()
        for button in (self.add_button, self.remove_button, self.up_button, self.down_button):
            edit_row.addWidget(button)
        edit_row.addStretch(1)
        file_row = QHBoxLayout()
        for button in (self.build_button, self.import_button, self.export_button):
            file_row.addWidget(button)
        file_row.addStretch(1)

        self.clean_strip = TokenStrip()
        self.corrupt_strip = TokenStrip()
        self.clean_label = QLabel("Clean tokens")
        self.corrupt_label = QLabel("Corrupted tokens")
        self.tokens_note = QLabel()
        self.tokens_note.setWordWrap(True)
        strips = QWidget()
        strips_layout = QVBoxLayout(strips)
        strips_layout.setContentsMargins(0, 0, 0, 0)
        for widget in (self.clean_label, self.clean_strip, self.corrupt_label, self.corrupt_strip, self.tokens_note):
            strips_layout.addWidget(widget)

        self.summary_label = QLabel()
        self.summary_label.setWordWrap(True)
        self.findings_list = QListWidget()
        self.findings_list.setWordWrap(True)
        self.findings_list.itemActivated.connect(self._on_finding_activated)
        findings = QWidget()
        findings_layout = QVBoxLayout(findings)
        findings_layout.setContentsMargins(0, 0, 0, 0)
        findings_layout.addWidget(self.summary_label)
        findings_layout.addWidget(self.findings_list)
        self.findings_list.hide()

        splitter = QSplitter(Qt.Vertical)
        top = QWidget()
        top_layout = QVBoxLayout(top)
        top_layout.setContentsMargins(0, 0, 0, 0)
        top_layout.addWidget(self.table)
        top_layout.addLayout(edit_row)
        top_layout.addLayout(file_row)
        splitter.addWidget(top)
        # Long prompts wrap onto several strip rows; scrolling them keeps the dock from
        # forcing the window taller than a laptop screen.
        strips_scroll = QScrollArea()
        strips_scroll.setWidget(strips)
        strips_scroll.setWidgetResizable(True)
        strips_scroll.setFrameShape(QFrame.Shape.NoFrame)
        strips_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        splitter.addWidget(strips_scroll)
        splitter.addWidget(findings)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 1)
        splitter.setStretchFactor(2, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(splitter)

        self._validate_timer = QTimer(self)
        self._validate_timer.setSingleShot(True)
        self._validate_timer.setInterval(_VALIDATE_DELAY_MS)
        self._validate_timer.timeout.connect(self.revalidate)
        selection.subscribe(self._on_selection_changed)
        self._refresh_summary()

    # -- public API ---------------------------------------------------------------

    def prompt_set(self) -> PromptSet:
        return PromptSet(tuple(self._pairs), dict(self._set_meta))

    def set_prompt_set(self, prompt_set: PromptSet) -> None:
        """Replace the table's contents (e.g. the notebook set, an import, the builder)."""
        self._pairs = list(prompt_set.pairs)
        self._set_meta = dict(prompt_set.meta)
        self._fill_table()
        if self._pairs:
            self.table.setCurrentCell(min(self.selection.prompt, len(self._pairs) - 1), 0)
        self._changed()

    def set_tokenizer(self, tokenizer: Any, n_ctx: int | None) -> None:
        """Validate against this model's tokenizer from now on."""
        self._tokenizer = tokenizer
        self._n_ctx = n_ctx
        self.revalidate()

    def findings(self) -> list[Finding]:
        return list(self._findings)

    @property
    def valid(self) -> bool:
        return self._valid

    @property
    def invalid_reason(self) -> str:
        return self._reason

    def set_read_only(self, read_only: bool) -> None:
        """A session whose model is absent shows its prompts but does not edit them."""
        self.table.setEditTriggers(
            QAbstractItemView.NoEditTriggers if read_only else QAbstractItemView.DoubleClicked
            | QAbstractItemView.EditKeyPressed | QAbstractItemView.AnyKeyPressed
        )
        for button in (self.add_button, self.remove_button, self.up_button, self.down_button,
                       self.build_button, self.import_button):
            button.setEnabled(not read_only)

    def add_pair(self) -> None:
        row = self.table.currentRow()
        template = self._pairs[row] if 0 <= row < len(self._pairs) else PromptPair("", "", "", "")
        insert_at = row + 1 if row >= 0 else len(self._pairs)
        self._pairs.insert(insert_at, template)
        self._fill_table()
        self.table.setCurrentCell(insert_at, 0)
        self._changed()

    def remove_pair(self) -> None:
        row = self.table.currentRow()
        if not 0 <= row < len(self._pairs):
            return
        del self._pairs[row]
        self._fill_table()
        if self._pairs:
            self.table.setCurrentCell(min(row, len(self._pairs) - 1), 0)
        self._changed()

    def move_pair(self, step: int) -> None:
        row = self.table.currentRow()
        target = row + step
        if not (0 <= row < len(self._pairs) and 0 <= target < len(self._pairs)):
            return
        self._pairs[row], self._pairs[target] = self._pairs[target], self._pairs[row]
        self._fill_table()
        self.table.setCurrentCell(target, 0)
        self._changed()

    def revalidate(self) -> None:
        """Validate now and show the findings (also called after a short pause in typing)."""
        self._validate_timer.stop()
        if self._tokenizer is None:
            self._findings = []
            self._set_validity(False, "Run is available once the model (and its tokenizer) has loaded.")
        else:
            self._findings = validate(self.prompt_set(), self._tokenizer, self._n_ctx)
            errors = [f for f in self._findings if f.severity == "error"]
            if errors:
                more = f" ({len(errors) - 1} more error{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
                self._set_validity(False, f"The prompt set has problems: {errors[0].message}{more}")
            else:
                self._set_validity(True, "")
        self._show_findings()
        self._show_tokens()

    # -- table ---------------------------------------------------------------------

    def _fill_table(self) -> None:
        self._filling = True
        self.table.setRowCount(len(self._pairs))
        for row, pair in enumerate(self._pairs):
            for column, name in enumerate(TEXT_FIELDS):
                self.table.setItem(row, column, QTableWidgetItem(getattr(pair, name)))
            check = QTableWidgetItem("")
            check.setFlags(check.flags() & ~Qt.ItemIsEditable)
            self.table.setItem(row, CHECK_COLUMN, check)
        # Rows are numbered from 0 like the findings ("Pair 2: ...") and the result panels' prompts.
        self.table.setVerticalHeaderLabels([str(row) for row in range(len(self._pairs))])
        self._filling = False

    def _on_item_changed(self, item: QTableWidgetItem) -> None:
        if self._filling or item.column() >= len(TEXT_FIELDS):
            return
        row = item.row()
        name = TEXT_FIELDS[item.column()]
        if getattr(self._pairs[row], name) == item.text():
            return
        # Keep the builder's metadata: role inference falls back to the text when it no longer matches.
        self._pairs[row] = replace(self._pairs[row], **{name: item.text()})
        self._changed()

    def _changed(self) -> None:
        self.prompt_set_changed.emit()
        self._validate_timer.start()
        self._refresh_summary()

    def _on_current_cell_changed(self, row: int, _column: int, previous_row: int, _previous_column: int) -> None:
        if row != previous_row and 0 <= row < len(self._pairs):
            self.selection.select_prompt(row)
        self._show_tokens()

    def _on_selection_changed(self, selection: Selection, changed: frozenset) -> None:
        if "prompt" in changed and selection.prompt < len(self._pairs) and self.table.currentRow() != selection.prompt:
            self.table.setCurrentCell(selection.prompt, max(0, self.table.currentColumn()))

    # -- findings --------------------------------------------------------------------

    def _set_validity(self, ok: bool, reason: str) -> None:
        changed = ok != self._valid or reason != self._reason
        self._valid, self._reason = ok, reason
        if changed:
            self.validity_changed.emit(ok, reason)

    def _show_findings(self) -> None:
        self._filling = True
        by_row: dict[int, list[Finding]] = {}
        for finding in self._findings:
            if finding.pair_index is not None:
                by_row.setdefault(finding.pair_index, []).append(finding)
        for row in range(self.table.rowCount()):
            row_findings = by_row.get(row, [])
            for column, name in enumerate(TEXT_FIELDS):
                item = self.table.item(row, column)
                cell = [f for f in row_findings if f.field == name]
                item.setBackground(QBrush(self._tint(cell)) if cell else QBrush())
                # The full text too: narrow columns elide the middle of a prompt.
                item.setToolTip("\n\n".join([repr(item.text())] + [f"{f.message}\n→ {f.hint}" for f in cell]))
            check = self.table.item(row, CHECK_COLUMN)
            errors = [f for f in row_findings if f.severity == "error"]
            warnings = [f for f in row_findings if f.severity == "warning"]
            if errors:
                check.setText(f"✖ {len(errors)} error{'s' if len(errors) > 1 else ''}")
                check.setForeground(QBrush(QColor(211, 47, 47)))
            elif warnings:
                check.setText(f"⚠ {len(warnings)} warning{'s' if len(warnings) > 1 else ''}")
                check.setForeground(QBrush(QColor(230, 140, 0)))
            else:
                check.setText("✔" if self._tokenizer is not None else "")
                check.setForeground(QBrush(QColor(46, 125, 50)))
            check.setToolTip("\n\n".join(f"{f.message}\n→ {f.hint}" for f in row_findings))
        self._filling = False
        self.findings_list.clear()
        for finding in self._findings:
            mark = "✖" if finding.severity == "error" else "⚠"
            item = QListWidgetItem(f"{mark} {finding.message}  → {finding.hint}")
            item.setData(Qt.UserRole, finding.pair_index)
            item.setForeground(QBrush(QColor(211, 47, 47) if finding.severity == "error" else QColor(230, 140, 0)))
            self.findings_list.addItem(item)
        self.findings_list.setVisible(bool(self._findings))
        self._refresh_summary()

    @staticmethod
    def _tint(findings: list[Finding]) -> QColor:
        return _ERROR_TINT if any(f.severity == "error" for f in findings) else _WARNING_TINT

    def _refresh_summary(self) -> None:
        errors = sum(1 for f in self._findings if f.severity == "error")
        warnings = len(self._findings) - errors
        if self._tokenizer is None:
            text = f"{len(self._pairs)} pairs. Checks run once the model's tokenizer has loaded."
        elif not self._findings:
            text = f"{len(self._pairs)} pairs, all valid for this model."
        else:
            text = f"{len(self._pairs)} pairs: {errors} error(s), {warnings} warning(s). Double-click a line to go to its pair."
        self.summary_label.setText(text)

    def _on_finding_activated(self, item: QListWidgetItem) -> None:
        row = item.data(Qt.UserRole)
        if row is not None and 0 <= row < len(self._pairs):
            self.table.setCurrentCell(row, 0)

    # -- token strips ------------------------------------------------------------------

    def _show_tokens(self) -> None:
        row = self.table.currentRow()
        if self._tokenizer is None or not 0 <= row < len(self._pairs):
            self.clean_strip.set_tokens([])
            self.corrupt_strip.set_tokens([])
            self.tokens_note.setText("Token strips appear when the model has loaded." if self._tokenizer is None else "")
            return
        pair = self._pairs[row]
        try:
            tokenized = tokenize_set(PromptSet((pair,)), self._tokenizer, self._n_ctx)
        except IOIError as error:
            # An invalid pair still shows how it tokenizes, without role positions.
            self.clean_strip.set_tokens(self._str_tokens(pair.clean))
            self.corrupt_strip.set_tokens(self._str_tokens(pair.corrupt))
            self.tokens_note.setText(f"Roles are not shown: {error.message}")
            return
        roles = {name: int(positions[0]) for name, positions in tokenized.roles.items() if positions[0] >= 0}
        self.clean_strip.set_tokens(tokenized.str_tokens[0], roles)
        self.corrupt_strip.set_tokens(tokenized.corrupt_str_tokens[0], roles)
        self.clean_label.setText(f"Clean tokens ({len(tokenized.str_tokens[0])} with BOS) of pair {row}")
        self.corrupt_label.setText(f"Corrupted tokens ({len(tokenized.corrupt_str_tokens[0])} with BOS)")
        self.tokens_note.setText("")

    def _str_tokens(self, text: str) -> list[str]:
        return token_strings(self._tokenizer, to_tokens(self._tokenizer, text)) if text else []
