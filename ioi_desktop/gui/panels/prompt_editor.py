"""Prompt editor: the table of prompt pairs, a detail pane, live token strips, validation, undo.

Each row is one pair (clean prompt, corrupted prompt, correct answer,
incorrect answer). The table is a model/view table (:class:`PairTableModel`,
one object for the whole set, no item per cell), so a set of thousands of
pairs shows at once. The prompts wrap to their full text, and the tokens that
differ between the clean and the corrupted prompt (``core.prompt_diff``) are
highlighted in both cells by :class:`PromptTextDelegate`. The pane under the
table edits the selected pair with multi-line editors; cells can also be
edited in place. Under that, token strips show how the model's tokenizer cuts
the selected pair's prompts, with the named positions (IO, S1, S2, END).

Every change to the set (an edit, add, remove, move, a new set from the
builder, an import, the notebook set) is one step on :attr:`undo_stack` (a
``QUndoStack``); the window's Edit menu offers Undo and Redo. The stack's
clean state marks the set as saved.

Validation is ``core.prompts.validate`` against the loaded model's tokenizer,
with the loaded model's BOS convention (``ModelInfo.prepend_bos``, handed in by
``set_tokenizer``): lengths, context limits and the token strips' positions
count a BOS only when the model's prompts get one.
It runs through the job runner the window hands in (``set_job_runner``: the
worker's input thread), shortly after each edit, never on the GUI thread; while
it runs the editor is "checking" and Run waits. Findings appear next to the
offending pair: the row's "Check" column says what is wrong, the offending
cell is tinted and its tooltip holds the message and the fix, and the list
under the table shows every finding (double-click jumps to the pair).
``validity_changed`` tells the window whether Run may start and, if not, why.

The selected row is the selection model's prompt, so choosing a pair here
updates the per-prompt result views and vice versa.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, replace
from typing import Any, Callable

from PySide6.QtCore import QAbstractListModel, QAbstractTableModel, QEvent, QModelIndex, QRectF, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QAbstractTextDocumentLayout, QBrush, QColor, QPalette, QTextDocument, QUndoCommand, QUndoStack
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListView,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSplitter,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from ioi_desktop.core.errors import IOIError
from ioi_desktop.core.prompt_diff import differing_spans
from ioi_desktop.core.prompts import TEXT_FIELDS, Finding, PromptPair, PromptSet, token_strings, tokenize_set, to_tokens, validate
from ioi_desktop.core.selection import Selection, SelectionModel
from ioi_desktop.core.workbench import prompt_set_hash
from ioi_desktop.gui.widgets.token_strip import TokenStrip

HEADERS = ("Clean", "Corrupted", "Correct", "Incorrect", "Check")
CHECK_COLUMN = len(TEXT_FIELDS)
PROMPT_COLUMNS = (0, 1)
DIFF_ROLE = Qt.UserRole + 1  # list of (start, end) character spans that differ from the other prompt
_ERROR_TINT = QColor(229, 57, 53, 70)
_WARNING_TINT = QColor(251, 192, 45, 70)
_DIFF_COLOUR = "#ffd54f"
_VALIDATE_DELAY_MS = 200
_DETAIL_COMMIT_MS = 400
_DIFF_CACHE_LIMIT = 4096
VALIDATE = "validate_prompts"


@dataclass(frozen=True)
class Checked:
    """What a validation job hands back: the findings, grouped by pair, for one prompt set."""

    prompt_set: PromptSet
    findings: tuple[Finding, ...]
    by_row: dict


def check_prompt_set(prompt_set: PromptSet, tokenizer: Any, n_ctx: int | None,
                     prepend_bos: bool | None = None) -> Checked:
    """Validate and group the findings by pair (runs in the worker's input thread); ``prepend_bos``:
    the model's BOS convention (``ModelInfo.prepend_bos``; None: BOS when the tokenizer has one)."""
    findings = tuple(validate(prompt_set, tokenizer, n_ctx, prepend_bos))
    by_row: dict[int, list[Finding]] = {}
    for finding in findings:
        if finding.pair_index is not None:
            by_row.setdefault(finding.pair_index, []).append(finding)
    return Checked(prompt_set, findings, by_row)


# ---------------------------------------------------------------------------- models


class PairTableModel(QAbstractTableModel):
    """The pairs of the set as a table model: one row per pair, the text fields and a Check column.

    Edits made in the view do not change the model directly: ``edit_requested``
    hands them to the editor, which makes them undoable steps.
    """

    edit_requested = Signal(int, str, str)  # row, field, new text

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.pairs: list[PromptPair] = []
        self._by_row: dict[int, list[Finding]] = {}
        self._checked = False
        self.editable = True
        self.tokenizer: Any = None
        self._diffs: dict[tuple[str, str], tuple[list, list]] = {}

    # -- shape
    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: N802 - Qt override
        return 0 if parent.isValid() else len(self.pairs)

    def columnCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: N802 - Qt override
        return 0 if parent.isValid() else len(HEADERS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.DisplayRole) -> Any:  # noqa: N802
        if role != Qt.DisplayRole:
            return None
        if orientation == Qt.Horizontal:
            return HEADERS[section] if 0 <= section < len(HEADERS) else None
        # Rows are numbered from 0 like the findings ("Pair 2: ...") and the result panels' prompts.
        return str(section)

    def flags(self, index: QModelIndex) -> Qt.ItemFlags:
        flags = Qt.ItemIsEnabled | Qt.ItemIsSelectable
        if self.editable and index.column() < CHECK_COLUMN:
            flags |= Qt.ItemIsEditable
        return flags

    # -- contents
    def differing(self, row: int) -> tuple[list, list]:
        """The spans of the clean and corrupted prompt of ``row`` that differ (computed when first painted)."""
        pair = self.pairs[row]
        key = (pair.clean, pair.corrupt)
        spans = self._diffs.get(key)
        if spans is None:
            if len(self._diffs) > _DIFF_CACHE_LIMIT:
                self._diffs.clear()
            spans = self._diffs[key] = differing_spans(pair.clean, pair.corrupt, self.tokenizer)
        return spans

    def data(self, index: QModelIndex, role: int = Qt.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self.pairs):
            return None
        row, column = index.row(), index.column()
        pair = self.pairs[row]
        findings = self._by_row.get(row, [])
        if column == CHECK_COLUMN:
            return self._check_data(findings, role)
        name = TEXT_FIELDS[column]
        text = getattr(pair, name)
        if role in (Qt.DisplayRole, Qt.EditRole):
            return text
        cell = [f for f in findings if f.field == name]
        if role == Qt.BackgroundRole:
            if not cell:
                return None
            return QBrush(_ERROR_TINT if any(f.severity == "error" for f in cell) else _WARNING_TINT)
        if role == Qt.ToolTipRole:
            return "\n\n".join([repr(text)] + [f"{f.message}\n→ {f.hint}" for f in cell])
        if role == DIFF_ROLE and column in PROMPT_COLUMNS:
            return self.differing(row)[column]
        return None

    def _check_data(self, findings: list[Finding], role: int) -> Any:
        errors = [f for f in findings if f.severity == "error"]
        warnings = [f for f in findings if f.severity == "warning"]
        if role == Qt.DisplayRole:
            # Short, so the prompts keep the width; the tooltip and the list below say what is wrong.
            if errors:
                return f"✖ {len(errors)}"
            if warnings:
                return f"⚠ {len(warnings)}"
            return "✔" if self._checked else ""
        if role == Qt.ForegroundRole:
            return QBrush(QColor(211, 47, 47) if errors else QColor(230, 140, 0) if warnings else QColor(46, 125, 50))
        if role == Qt.ToolTipRole:
            counts = ", ".join(part for part in (
                f"{len(errors)} error{'s' if len(errors) != 1 else ''}" if errors else "",
                f"{len(warnings)} warning{'s' if len(warnings) != 1 else ''}" if warnings else "") if part)
            return "\n\n".join([counts] + [f"{f.message}\n→ {f.hint}" for f in findings]) if findings else None
        if role == Qt.TextAlignmentRole:
            return int(Qt.AlignCenter)
        return None

    def setData(self, index: QModelIndex, value: Any, role: int = Qt.EditRole) -> bool:  # noqa: N802 - Qt override
        if role != Qt.EditRole or not index.isValid() or index.column() >= CHECK_COLUMN:
            return False
        name = TEXT_FIELDS[index.column()]
        text = str(value)
        if getattr(self.pairs[index.row()], name) != text:
            self.edit_requested.emit(index.row(), name, text)
        return True

    # -- changes (made by the editor's undo commands)
    def set_pairs(self, pairs: list[PromptPair]) -> None:
        self.beginResetModel()
        self.pairs = list(pairs)
        self._by_row = {}
        self._checked = False
        self.endResetModel()

    def replace_pair(self, row: int, pair: PromptPair) -> None:
        self.pairs[row] = pair
        self.dataChanged.emit(self.index(row, 0), self.index(row, len(HEADERS) - 1))

    def insert_pair(self, row: int, pair: PromptPair) -> None:
        self.beginInsertRows(QModelIndex(), row, row)
        self.pairs.insert(row, pair)
        self.endInsertRows()

    def remove_pair(self, row: int) -> PromptPair:
        self.beginRemoveRows(QModelIndex(), row, row)
        pair = self.pairs.pop(row)
        self.endRemoveRows()
        return pair

    def swap(self, row: int, other: int) -> None:
        self.pairs[row], self.pairs[other] = self.pairs[other], self.pairs[row]
        top, bottom = min(row, other), max(row, other)
        self.dataChanged.emit(self.index(top, 0), self.index(bottom, len(HEADERS) - 1))

    def set_findings(self, by_row: dict, checked: bool) -> None:
        """Show a validation's findings; one change signal for the whole table."""
        self._by_row = by_row
        self._checked = checked
        if self.pairs:
            self.dataChanged.emit(self.index(0, 0), self.index(len(self.pairs) - 1, len(HEADERS) - 1))

    def set_tokenizer(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self._diffs.clear()


class RowNumberHeader(QHeaderView):
    """The table's vertical header (the pair numbers), sized without asking the model about hundreds of rows.

    To size itself after every new set, QHeaderView measures the first and last hundred sections,
    each through several ``headerData`` calls into Python (over 800 calls, milliseconds on the GUI
    thread, for any set of 200 pairs or more). The labels are row numbers, so one section per digit
    count is measured the Qt way and its size reused for the others."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(Qt.Orientation.Vertical, parent)
        self._sizes: dict[tuple[int, str], QSize] = {}

    def sectionSizeFromContents(self, logical_index: int) -> QSize:  # noqa: N802 - Qt override
        key = (len(str(logical_index)), self.font().key())
        size = self._sizes.get(key)
        if size is None:
            if len(self._sizes) > 32:
                self._sizes.clear()
            size = self._sizes[key] = super().sectionSizeFromContents(logical_index)
        return QSize(size)


class FindingsModel(QAbstractListModel):
    """The findings as a list model (one line each; double-click goes to the pair)."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.findings: tuple[Finding, ...] = ()

    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: N802 - Qt override
        return 0 if parent.isValid() else len(self.findings)

    def data(self, index: QModelIndex, role: int = Qt.DisplayRole) -> Any:
        if not index.isValid():
            return None
        finding = self.findings[index.row()]
        if role == Qt.DisplayRole:
            mark = "✖" if finding.severity == "error" else "⚠"
            return f"{mark} {finding.message}  → {finding.hint}"
        if role == Qt.ForegroundRole:
            return QBrush(QColor(211, 47, 47) if finding.severity == "error" else QColor(230, 140, 0))
        if role == Qt.UserRole:
            return finding.pair_index
        return None

    def set_findings(self, findings: tuple[Finding, ...]) -> None:
        self.beginResetModel()
        self.findings = tuple(findings)
        self.endResetModel()


# ---------------------------------------------------------------------------- the delegate


def highlighted_html(text: str, spans: list) -> str:
    """``text`` as HTML with ``spans`` on a highlight background (whitespace kept)."""
    parts, at = [], 0
    for a, b in spans:
        parts.append(html.escape(text[at:a]))
        parts.append(f"<span style='background-color:{_DIFF_COLOUR}; color:#000000'>{html.escape(text[a:b])}</span>")
        at = b
    parts.append(html.escape(text[at:]))
    return "".join(parts)


class PromptTextDelegate(QStyledItemDelegate):
    """Paints a prompt wrapped to the cell's width with the tokens that differ from its partner highlighted."""

    MARGIN = 3
    CACHE = 512  # laid-out documents kept: repaints and scrolling back reuse them

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._documents: dict[tuple, QTextDocument] = {}

    def _document(self, option: QStyleOptionViewItem, index: QModelIndex, width: float) -> QTextDocument:
        text = str(index.data(Qt.DisplayRole) or "")
        spans = tuple(tuple(span) for span in (index.data(DIFF_ROLE) or ()))
        key = (text, spans, int(width), option.font.key())
        doc = self._documents.get(key)
        if doc is None:
            if len(self._documents) >= self.CACHE:
                self._documents.clear()
            doc = QTextDocument()
            doc.setDocumentMargin(self.MARGIN)
            doc.setDefaultFont(option.font)
            doc.setHtml(highlighted_html(text, list(spans)))
            doc.setTextWidth(max(20.0, width))
            self._documents[key] = doc
        return doc

    def paint(self, painter, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        opt = QStyleOptionViewItem(option)
        self.initStyleOption(opt, index)
        opt.text = ""
        style = opt.widget.style() if opt.widget is not None else None
        if style is not None:
            style.drawControl(QStyle.CE_ItemViewItem, opt, painter, opt.widget)
        doc = self._document(option, index, option.rect.width())
        context = QAbstractTextDocumentLayout.PaintContext()
        selected = bool(option.state & QStyle.State_Selected)
        group = QPalette.Active if option.state & QStyle.State_Active else QPalette.Inactive
        context.palette.setColor(QPalette.Text, option.palette.color(
            group, QPalette.HighlightedText if selected else QPalette.Text))
        painter.save()
        painter.translate(option.rect.topLeft())
        painter.setClipRect(QRectF(0, 0, option.rect.width(), option.rect.height()))
        doc.documentLayout().draw(painter, context)
        painter.restore()

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex) -> QSize:  # noqa: N802 - Qt override
        doc = self._document(option, index, option.rect.width() if option.rect.width() > 0 else 240)
        return QSize(int(doc.idealWidth()), int(doc.size().height()))

    def text_height(self, option: QStyleOptionViewItem, text: str, width: float) -> int:
        doc = QTextDocument()
        doc.setDocumentMargin(self.MARGIN)
        doc.setDefaultFont(option.font)
        doc.setPlainText(text)
        doc.setTextWidth(max(20.0, width))
        return int(doc.size().height()) + 1


# ---------------------------------------------------------------------------- undo steps


class _SetCommand(QUndoCommand):
    """Replace the whole set (builder, import, notebook set)."""

    def __init__(self, editor: "PromptEditor", new: PromptSet, text: str) -> None:
        super().__init__(text)
        self.editor = editor
        self.old = editor.prompt_set()
        self.new = new

    def redo(self) -> None:
        self.editor._apply_set(self.new)

    def undo(self) -> None:
        self.editor._apply_set(self.old)


class _EditCommand(QUndoCommand):
    """One field of one pair changed; typing bursts in the same field merge into one step."""

    ID = 17

    def __init__(self, editor: "PromptEditor", row: int, field: str, text: str) -> None:
        super().__init__(f"Edit pair {row} ({field})")
        self.editor, self.row, self.field = editor, row, field
        self.old = editor.model.pairs[row]
        # Keep the builder's metadata: role inference falls back to the text when it no longer matches.
        self.new = replace(self.old, **{field: text})

    def id(self) -> int:
        return self.ID

    def mergeWith(self, other: QUndoCommand) -> bool:  # noqa: N802 - Qt override
        if not isinstance(other, _EditCommand) or (other.row, other.field) != (self.row, self.field):
            return False
        self.new = other.new
        return True

    def redo(self) -> None:
        self.editor._apply_pair(self.row, self.new)

    def undo(self) -> None:
        self.editor._apply_pair(self.row, self.old)


class _InsertCommand(QUndoCommand):
    def __init__(self, editor: "PromptEditor", row: int, pair: PromptPair) -> None:
        super().__init__(f"Add pair {row}")
        self.editor, self.row, self.pair = editor, row, pair

    def redo(self) -> None:
        self.editor._apply_insert(self.row, self.pair)

    def undo(self) -> None:
        self.editor._apply_remove(self.row)


class _RemoveCommand(QUndoCommand):
    def __init__(self, editor: "PromptEditor", row: int) -> None:
        super().__init__(f"Remove pair {row}")
        self.editor, self.row = editor, row
        self.pair = editor.model.pairs[row]

    def redo(self) -> None:
        self.editor._apply_remove(self.row)

    def undo(self) -> None:
        self.editor._apply_insert(self.row, self.pair)


class _MoveCommand(QUndoCommand):
    def __init__(self, editor: "PromptEditor", row: int, target: int) -> None:
        super().__init__(f"Move pair {row} {'up' if target < row else 'down'}")
        self.editor, self.row, self.target = editor, row, target

    def redo(self) -> None:
        self.editor._apply_swap(self.row, self.target, self.target)

    def undo(self) -> None:
        self.editor._apply_swap(self.row, self.target, self.row)


# ---------------------------------------------------------------------------- the editor


JobRunner = Callable[[str, Callable[[Any], Any], Callable[[Any], None], Callable[[Any], None]], Any]


class PromptEditor(QWidget):
    """Edit a prompt set; emits ``prompt_set_changed`` and ``validity_changed``."""

    TITLE = "Prompts"
    prompt_set_changed = Signal()
    validity_changed = Signal(bool, str)  # ok, why not (one sentence)
    checked = Signal()  # a validation finished and its findings are shown
    build_requested = Signal()
    import_requested = Signal()
    export_requested = Signal()

    def __init__(self, selection: SelectionModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.selection = selection
        self._set_meta: dict = {}
        self._tokenizer: Any = None
        self._n_ctx: int | None = None
        self._prepend_bos: bool | None = None
        self._findings: tuple[Finding, ...] = ()
        self._valid = False
        self._reason = "Validation waits for the model's tokenizer."
        self._checking = False
        self._job_runner: JobRunner | None = None
        self._read_only = False
        self.undo_stack = QUndoStack(self)

        self.model = PairTableModel(self)
        self.model.edit_requested.connect(self._on_edit_requested)
        self.table = QTableView()
        self.table.setObjectName("prompt_table")
        self.table.setVerticalHeader(RowNumberHeader(self.table))
        self.table.setModel(self.model)
        self.delegate = PromptTextDelegate(self.table)
        for column in PROMPT_COLUMNS:
            self.table.setItemDelegateForColumn(column, self.delegate)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(True)
        self.table.setVerticalScrollMode(QAbstractItemView.ScrollPerPixel)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.Stretch)
        header.setSectionResizeMode(1, QHeaderView.Stretch)
        # Fixed widths for the answers and the check mark: sizing them to their contents
        # would measure every row (seconds for a thousand pairs).
        metrics = header.fontMetrics()
        for column in (2, 3, CHECK_COLUMN):
            header.setSectionResizeMode(column, QHeaderView.Interactive)
            header.resizeSection(column, max(metrics.horizontalAdvance(HEADERS[column]),
                                             metrics.horizontalAdvance(" Martin")) + 14)
        header.setMinimumSectionSize(metrics.horizontalAdvance("Check") + 10)
        # Every row gets the height of the longest prompt wrapped (one number, not one per row).
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.Fixed)
        header.sectionResized.connect(lambda *_: self._fit_timer.start())
        self.table.selectionModel().currentRowChanged.connect(self._on_current_row_changed)

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

        # The selected pair, full text, multi-line: edits become undo steps after a short pause.
        self.detail_box = QGroupBox("Selected pair")
        self.clean_edit = QPlainTextEdit()
        self.corrupt_edit = QPlainTextEdit()
        self.correct_edit = QLineEdit()
        self.incorrect_edit = QLineEdit()
        self.detail_edits: dict[str, Any] = {"clean": self.clean_edit, "corrupt": self.corrupt_edit,
                                             "correct": self.correct_edit, "incorrect": self.incorrect_edit}
        for edit in (self.clean_edit, self.corrupt_edit):
            edit.setTabChangesFocus(True)
            edit.setFixedHeight(edit.fontMetrics().lineSpacing() * 2 + 14)
        answers = QHBoxLayout()
        answers.addWidget(QLabel("Correct"))
        answers.addWidget(self.correct_edit, 1)
        answers.addWidget(QLabel("Incorrect"))
        answers.addWidget(self.incorrect_edit, 1)
        detail_form = QFormLayout(self.detail_box)
        detail_form.setContentsMargins(6, 4, 6, 4)
        detail_form.addRow("Clean", self.clean_edit)
        detail_form.addRow("Corrupted", self.corrupt_edit)
        detail_form.addRow(answers)
        self._detail_row = -1
        self._filling_detail = False
        self._detail_timer = QTimer(self)
        self._detail_timer.setSingleShot(True)
        self._detail_timer.setInterval(_DETAIL_COMMIT_MS)
        self._detail_timer.timeout.connect(self.commit_detail)
        for edit in (self.clean_edit, self.corrupt_edit):
            edit.textChanged.connect(self._on_detail_edited)
        for edit in (self.correct_edit, self.incorrect_edit):
            edit.textEdited.connect(self._on_detail_edited)
            edit.editingFinished.connect(self.commit_detail)

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
        self.findings_model = FindingsModel(self)
        self.findings_list = QListView()
        self.findings_list.setModel(self.findings_model)
        self.findings_list.setWordWrap(True)
        self.findings_list.setUniformItemSizes(True)
        self.findings_list.activated.connect(self._on_finding_activated)
        self.findings_list.doubleClicked.connect(self._on_finding_activated)
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
        below = QWidget()
        below_layout = QVBoxLayout(below)
        below_layout.setContentsMargins(0, 0, 0, 0)
        below_layout.addWidget(self.detail_box)
        below_layout.addWidget(strips)
        below_layout.addStretch(1)
        # Long prompts wrap onto several strip rows; scrolling them keeps the dock from
        # forcing the window taller than a laptop screen.
        below_scroll = QScrollArea()
        below_scroll.setWidget(below)
        below_scroll.setWidgetResizable(True)
        below_scroll.setFrameShape(QFrame.Shape.NoFrame)
        below_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        splitter.addWidget(below_scroll)
        splitter.addWidget(findings)
        splitter.setStretchFactor(0, 5)
        splitter.setStretchFactor(1, 4)
        splitter.setStretchFactor(2, 1)
        splitter.setSizes([500, 400, 60])
        self.splitter = splitter
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(splitter)

        self._validate_timer = QTimer(self)
        self._validate_timer.setSingleShot(True)
        self._validate_timer.setInterval(_VALIDATE_DELAY_MS)
        self._validate_timer.timeout.connect(self.revalidate)
        self._fit_timer = QTimer(self)
        self._fit_timer.setSingleShot(True)
        self._fit_timer.setInterval(30)
        self._fit_timer.timeout.connect(self._fit_rows)
        # Rows scrolled into view (or shown after a resize) get their own height on the next turn.
        self._sized_rows: set[int] = set()
        self._tokens_shown: tuple | None = None  # (row, pair, tokenizer, n_ctx) the token strips show
        self._fit_visible_timer = QTimer(self)
        self._fit_visible_timer.setSingleShot(True)
        self._fit_visible_timer.setInterval(0)
        self._fit_visible_timer.timeout.connect(self._fit_visible_rows)
        self.table.verticalScrollBar().valueChanged.connect(lambda _value: self._fit_visible_timer.start())
        self.table.viewport().installEventFilter(self)
        selection.subscribe(self._on_selection_changed)
        self._refresh_summary()
        self._fill_detail()

    # -- public API ---------------------------------------------------------------

    def prompt_set(self) -> PromptSet:
        return PromptSet(tuple(self.model.pairs), dict(self._set_meta))

    def set_prompt_set(self, prompt_set: PromptSet, undoable: bool = True, text: str = "Replace the prompt set") -> None:
        """Replace the table's contents (the notebook set, an import, the builder).

        ``undoable`` makes it one step of the undo stack; otherwise (a session
        opened, the start-up set) the stack starts afresh and the set counts as saved.
        """
        self.commit_detail()
        if undoable:
            self.undo_stack.push(_SetCommand(self, prompt_set, text))
        else:
            self.undo_stack.clear()
            self._apply_set(prompt_set)
            self.undo_stack.setClean()

    def set_job_runner(self, runner: JobRunner | None) -> None:
        """Run validations through ``runner(kind, function, on_done, on_failed)`` (the worker's ``prepare``)."""
        self._job_runner = runner

    def set_tokenizer(self, tokenizer: Any, n_ctx: int | None, prepend_bos: bool | None = None) -> None:
        """Validate against this model's tokenizer and BOS convention (``ModelInfo.prepend_bos``) from now on."""
        self._tokenizer = tokenizer
        self._n_ctx = n_ctx
        self._prepend_bos = prepend_bos
        self.model.set_tokenizer(tokenizer)
        self.revalidate()

    def findings(self) -> list[Finding]:
        return list(self._findings)

    @property
    def valid(self) -> bool:
        return self._valid

    @property
    def checking(self) -> bool:
        """True while a validation of the current set is pending or running."""
        return self._checking

    @property
    def invalid_reason(self) -> str:
        return self._reason

    @property
    def has_unsaved_edits(self) -> bool:
        """The set changed since it was opened or saved (the undo stack is not at its clean state)."""
        return not self.undo_stack.isClean()

    def mark_saved(self) -> None:
        self.commit_detail()
        self.undo_stack.setClean()

    def current_row(self) -> int:
        index = self.table.currentIndex()
        return index.row() if index.isValid() else -1

    def select_row(self, row: int, column: int = 0) -> None:
        if 0 <= row < len(self.model.pairs):
            self.table.setCurrentIndex(self.model.index(row, column))

    def set_read_only(self, read_only: bool) -> None:
        """A session whose model is absent shows its prompts but does not edit them."""
        self._read_only = read_only
        self.model.editable = not read_only
        self.table.setEditTriggers(
            QAbstractItemView.NoEditTriggers if read_only else QAbstractItemView.DoubleClicked
            | QAbstractItemView.EditKeyPressed | QAbstractItemView.AnyKeyPressed
        )
        for button in (self.add_button, self.remove_button, self.up_button, self.down_button,
                       self.build_button, self.import_button):
            button.setEnabled(not read_only)
        for edit in self.detail_edits.values():
            edit.setReadOnly(read_only)

    def add_pair(self) -> None:
        if self._read_only:
            return
        self.commit_detail()
        row = self.current_row()
        pairs = self.model.pairs
        template = pairs[row] if 0 <= row < len(pairs) else PromptPair("", "", "", "")
        self.undo_stack.push(_InsertCommand(self, row + 1 if row >= 0 else len(pairs), template))

    def remove_pair(self) -> None:
        if self._read_only:
            return
        self.commit_detail()
        row = self.current_row()
        if 0 <= row < len(self.model.pairs):
            self.undo_stack.push(_RemoveCommand(self, row))

    def move_pair(self, step: int) -> None:
        if self._read_only:
            return
        self.commit_detail()
        row = self.current_row()
        target = row + step
        if 0 <= row < len(self.model.pairs) and 0 <= target < len(self.model.pairs):
            self.undo_stack.push(_MoveCommand(self, row, target))

    def edit_pair(self, row: int, field: str, text: str) -> None:
        """Set one text field of one pair (an undo step; what typing in a cell or the pane does)."""
        if self._read_only or not 0 <= row < len(self.model.pairs) or field not in TEXT_FIELDS:
            return
        if getattr(self.model.pairs[row], field) != text:
            self.undo_stack.push(_EditCommand(self, row, field, text))

    def revalidate(self) -> None:
        """Validate now, in the job runner's thread; the findings show when it is done."""
        self._validate_timer.stop()
        if self._tokenizer is None:
            self._checking = False
            self._findings = ()
            self.model.set_findings({}, checked=False)
            self.findings_model.set_findings(())
            self.findings_list.hide()
            self._set_validity(False, "Run is available once the model (and its tokenizer) has loaded.")
            self._refresh_summary()
            self._show_tokens()
            return
        prompt_set, tokenizer, n_ctx, bos = self.prompt_set(), self._tokenizer, self._n_ctx, self._prepend_bos
        self._checking = True
        self._set_validity(False, f"Checking the {len(prompt_set)} pairs against the model's tokenizer…")
        self._refresh_summary()

        def job(_context) -> Checked:
            checked = check_prompt_set(prompt_set, tokenizer, n_ctx, bos)
            prompt_set_hash(prompt_set)  # remembered: Run needs it, and hashing 1000 pairs is not free
            return checked

        if self._job_runner is None:
            self._on_checked(job(None))
        else:
            self._job_runner(VALIDATE, job, self._on_checked, self._on_check_failed)

    # -- undo steps' effects ---------------------------------------------------------

    def _apply_set(self, prompt_set: PromptSet) -> None:
        row = max(0, self.selection.prompt)
        self._set_meta = dict(prompt_set.meta)
        self.model.set_pairs(list(prompt_set.pairs))
        self._fit_rows()
        if self.model.pairs:
            self.select_row(min(row, len(self.model.pairs) - 1))
        self._changed()

    def _apply_pair(self, row: int, pair: PromptPair) -> None:
        self.model.replace_pair(row, pair)
        self.select_row(row, max(0, self.table.currentIndex().column()))
        if row == self._detail_row:
            self._fill_detail()
        self._fit_timer.start()
        self._changed()

    def _apply_insert(self, row: int, pair: PromptPair) -> None:
        self.model.insert_pair(row, pair)
        self._refit_visible_rows()
        self.select_row(row)
        self._changed()

    def _apply_remove(self, row: int) -> None:
        self.model.remove_pair(row)
        self._refit_visible_rows()
        if self.model.pairs:
            self.select_row(min(row, len(self.model.pairs) - 1))
        self._fill_detail()
        self._changed()

    def _apply_swap(self, row: int, target: int, select: int) -> None:
        self.model.swap(row, target)
        self._refit_visible_rows()
        self.select_row(select)
        self._fill_detail()
        self._changed()

    def _changed(self) -> None:
        self.prompt_set_changed.emit()
        if self._tokenizer is not None:
            self._checking = True
            self._set_validity(False, "Checking the prompt set…")
        self._validate_timer.start()
        self._refresh_summary()
        self._show_tokens()

    def _on_edit_requested(self, row: int, field: str, text: str) -> None:
        self.edit_pair(row, field, text)

    # -- the table's row height ---------------------------------------------------------

    def _fit_rows(self) -> None:
        """Each row's height fits its own prompts wrapped at the columns' width (at most 12 lines).

        Measuring a thousand wrapped prompts would stall the GUI, so only the rows on screen are
        measured (:meth:`_fit_visible_rows`, again when the table scrolls or resizes); the others
        keep a default height, that of a prompt of median length, until they come into view."""
        pairs = self.model.pairs
        option = self._row_option()
        line = self.delegate.text_height(option, "Mg", 1000)
        height = line
        if pairs:
            widths = [self.table.columnWidth(column) for column in PROMPT_COLUMNS]
            for column, field in zip(PROMPT_COLUMNS, ("clean", "corrupt")):
                texts = sorted((getattr(p, field) for p in pairs), key=len)
                typical = texts[len(texts) // 2]
                height = max(height, self.delegate.text_height(option, typical, widths[column]))
        self._line_height = line
        self._sized_rows = set()
        self.table.verticalHeader().setDefaultSectionSize(min(max(height, line), 12 * line))
        self._fit_visible_rows()

    def _row_option(self) -> QStyleOptionViewItem:
        option = QStyleOptionViewItem()
        option.font = self.table.font()
        return option

    def row_fits(self, row: int) -> int:
        """The height that row ``row`` needs: its longer prompt wrapped at its column's width (1-12 lines)."""
        option = self._row_option()
        line = getattr(self, "_line_height", 0) or self.delegate.text_height(option, "Mg", 1000)
        pair = self.model.pairs[row]
        height = max(self.delegate.text_height(option, getattr(pair, field), self.table.columnWidth(column))
                     for column, field in zip(PROMPT_COLUMNS, ("clean", "corrupt")))
        return min(max(height, line), 12 * line)

    def _refit_visible_rows(self) -> None:
        """Rows moved or changed: measure the rows on screen again (on the next turn)."""
        self._sized_rows = set()
        self._fit_visible_timer.start()

    def _fit_visible_rows(self) -> None:
        """Give the rows on screen (not measured since the last change) their own heights."""
        header = self.table.verticalHeader()
        rows = len(self.model.pairs)
        row = self.table.rowAt(0)
        if row < 0 or not self.table.isVisible():
            return
        bottom = self.table.viewport().height()
        # Shrinking rows bring more into view: keep going until the viewport is full (bounded by the rows).
        while row < rows and header.sectionViewportPosition(row) < bottom:
            if row not in self._sized_rows:
                self._sized_rows.add(row)
                height = self.row_fits(row)
                if header.sectionSize(row) != height:
                    header.resizeSection(row, height)
            row += 1

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 - Qt override
        if watched is self.table.viewport() and event.type() in (QEvent.Type.Resize, QEvent.Type.Show):
            self._fit_visible_timer.start()
        return super().eventFilter(watched, event)

    # -- the detail pane -----------------------------------------------------------------

    def _fill_detail(self) -> None:
        row = self.current_row()
        self._detail_row = row
        self._filling_detail = True
        pair = self.model.pairs[row] if 0 <= row < len(self.model.pairs) else None
        self.detail_box.setTitle(f"Pair {row}" if pair is not None else "Selected pair")
        for field, edit in self.detail_edits.items():
            text = getattr(pair, field) if pair is not None else ""
            current = edit.toPlainText() if isinstance(edit, QPlainTextEdit) else edit.text()
            if current != text:
                if isinstance(edit, QPlainTextEdit):
                    edit.setPlainText(text)
                else:
                    edit.setText(text)
            edit.setEnabled(pair is not None)
        self._filling_detail = False

    def _on_detail_edited(self, *_args: Any) -> None:
        if not self._filling_detail:
            self._detail_timer.start()

    def commit_detail(self) -> None:
        """Hand the pane's pending edits to the undo stack now (also after a short pause in typing)."""
        self._detail_timer.stop()
        row = self._detail_row
        if self._filling_detail or not 0 <= row < len(self.model.pairs):
            return
        for field, edit in self.detail_edits.items():
            text = edit.toPlainText() if isinstance(edit, QPlainTextEdit) else edit.text()
            self.edit_pair(row, field, text)

    def _on_current_row_changed(self, current: QModelIndex, previous: QModelIndex) -> None:
        if self._detail_row != current.row():
            self.commit_detail()
        self._fill_detail()
        row = current.row()
        if row != previous.row() and 0 <= row < len(self.model.pairs):
            self.selection.select_prompt(row)
        self._show_tokens()

    def _on_selection_changed(self, selection: Selection, changed: frozenset) -> None:
        if "prompt" in changed and selection.prompt < len(self.model.pairs) and self.current_row() != selection.prompt:
            self.select_row(selection.prompt, max(0, self.table.currentIndex().column()))

    # -- findings --------------------------------------------------------------------

    def _set_validity(self, ok: bool, reason: str) -> None:
        changed = ok != self._valid or reason != self._reason
        self._valid, self._reason = ok, reason
        if changed:
            self.validity_changed.emit(ok, reason)

    def _on_checked(self, checked: Checked) -> None:
        if checked.prompt_set != self.prompt_set() or self._validate_timer.isActive():
            return  # the set changed while it was checked: the next check is on its way
        self._checking = False
        self._findings = checked.findings
        self.model.set_findings(checked.by_row, checked=True)
        self.findings_model.set_findings(checked.findings)
        self.findings_list.setVisible(bool(checked.findings))
        errors = [f for f in checked.findings if f.severity == "error"]
        if errors:
            more = f" ({len(errors) - 1} more error{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
            self._set_validity(False, f"The prompt set has problems: {errors[0].message}{more}")
        else:
            self._set_validity(True, "")
        self._refresh_summary()
        self._show_tokens()
        self.checked.emit()

    def _on_check_failed(self, failure: Any) -> None:
        self._checking = False
        self._set_validity(False, f"Checking the prompt set failed: {failure.message}")
        self._refresh_summary()

    def _refresh_summary(self) -> None:
        n = len(self.model.pairs)
        errors = sum(1 for f in self._findings if f.severity == "error")
        warnings = len(self._findings) - errors
        if self._tokenizer is None:
            text = f"{n} pairs. Checks run once the model's tokenizer has loaded."
        elif self._checking:
            text = f"{n} pairs. Checking them against the model's tokenizer…"
        elif not self._findings:
            text = f"{n} pairs, all valid for this model."
        else:
            text = f"{n} pairs: {errors} error(s), {warnings} warning(s). Double-click a line to go to its pair."
        self.summary_label.setText(text)

    def _on_finding_activated(self, index: QModelIndex) -> None:
        row = index.data(Qt.UserRole)
        if row is not None and 0 <= row < len(self.model.pairs):
            self.select_row(row)

    # -- token strips ------------------------------------------------------------------

    def _show_tokens(self) -> None:
        """The selected pair's tokens (one pair: quick enough for the GUI thread)."""
        row = self.current_row()
        if self._tokenizer is None or not 0 <= row < len(self.model.pairs):
            self._tokens_shown = None
            self.clean_strip.set_tokens([])
            self.corrupt_strip.set_tokens([])
            self.tokens_note.setText("Token strips appear when the model has loaded." if self._tokenizer is None else "")
            return
        pair = self.model.pairs[row]
        key = (row, pair, id(self._tokenizer), self._n_ctx, self._prepend_bos)
        if key == self._tokens_shown:
            return  # the strips show this pair already (a new set selects its row, then reports the change)
        self._tokens_shown = None
        try:
            tokenized = tokenize_set(PromptSet((pair,)), self._tokenizer, self._n_ctx, self._prepend_bos)
        except IOIError as error:
            # An invalid pair still shows how it tokenizes, without role positions.
            self.clean_strip.set_tokens(self._str_tokens(pair.clean))
            self.corrupt_strip.set_tokens(self._str_tokens(pair.corrupt))
            self.tokens_note.setText(f"Roles are not shown: {error.message}")
            return
        roles = {name: int(positions[0]) for name, positions in tokenized.roles.items() if positions[0] >= 0}
        self.clean_strip.set_tokens(tokenized.str_tokens[0], roles)
        self.corrupt_strip.set_tokens(tokenized.corrupt_str_tokens[0], roles)
        bos = "with BOS" if tokenized.prepend_bos else "no BOS"
        self.clean_label.setText(f"Clean tokens ({len(tokenized.str_tokens[0])}, {bos}) of pair {row}")
        self.corrupt_label.setText(f"Corrupted tokens ({len(tokenized.corrupt_str_tokens[0])}, {bos})")
        self.tokens_note.setText("")
        self._tokens_shown = key

    def _str_tokens(self, text: str) -> list[str]:
        return token_strings(self._tokenizer, to_tokens(self._tokenizer, text, self._prepend_bos)) if text else []
