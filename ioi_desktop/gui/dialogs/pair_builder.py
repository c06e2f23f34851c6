"""The pair builder dialog: IOI prompt pairs from templates, with a live preview.

A form over ``core.pairs.build_pairs``: template family, number of pairs N,
corruption scheme, seed, the symmetric option, the word lists (editable, one
word per line, starting from the IOI paper's lists) and, for the ``custom``
family, the user's own templates. Every change rebuilds the set shortly
after the user stops typing; the preview shows the pairs, how many names were
rejected for this model's tokenizer (and why), and how many drawn pairs were
rejected. OK hands the set to the prompt editor.

Building runs through the job runner the window hands in (the worker's input
thread), never on the GUI thread: a thousand pairs take a fraction of a second
there, and the dialog stays responsive; "Use these pairs" is enabled only when
the build of the current settings has finished. The preview is a model/view
table of the first rows. The settings are remembered (QSettings, ``pair_builder/``)
for the next time the dialog opens.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QSettings, Qt, QTimer
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
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableView,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ioi_desktop.core.errors import IOIError
from ioi_desktop.core.pairs import CORRUPTIONS, FAMILIES, BuilderSettings, BuildReport, WordLists, build_pairs, default_word_lists
from ioi_desktop.core.prompt_diff import differing_spans
from ioi_desktop.core.prompts import PromptSet
from ioi_desktop.gui.panels.prompt_editor import DIFF_ROLE, PromptTextDelegate

BUILD = "build_pairs"
_SETTINGS_KEY = "pair_builder/settings"
_PREVIEW_HEADERS = ("Clean prompt", "Corrupted prompt", "Correct", "Incorrect")


class PreviewModel(QAbstractTableModel):
    """The first pairs of a built set, read-only."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.pairs: tuple = ()

    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: N802 - Qt override
        return 0 if parent.isValid() else len(self.pairs)

    def columnCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: N802 - Qt override
        return 0 if parent.isValid() else len(_PREVIEW_HEADERS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.DisplayRole) -> Any:  # noqa: N802
        if role != Qt.DisplayRole:
            return None
        return _PREVIEW_HEADERS[section] if orientation == Qt.Horizontal else str(section)

    def data(self, index: QModelIndex, role: int = Qt.DisplayRole) -> Any:
        if not index.isValid():
            return None
        pair = self.pairs[index.row()]
        if role == DIFF_ROLE and index.column() < 2:
            # Words, not the model's tokens: the preview shows at most PREVIEW_ROWS rows.
            return differing_spans(pair.clean, pair.corrupt)[index.column()]
        if role not in (Qt.DisplayRole, Qt.ToolTipRole):
            return None
        return (pair.clean, pair.corrupt, pair.correct, pair.incorrect)[index.column()]

    def set_pairs(self, pairs: tuple) -> None:
        self.beginResetModel()
        self.pairs = tuple(pairs)
        self.endResetModel()

PREVIEW_ROWS = 200
_REBUILD_DELAY_MS = 300
_WORD_LISTS = ("names", "places", "objects", "animals")
_EXAMPLE_TEMPLATE = "When [B] and [A] went to the [PLACE], [B] gave a [OBJECT] to [A]"


class PairBuilderDialog(QDialog):
    """Build a prompt set; ``prompt_set()`` after ``accepted``."""

    def __init__(self, tokenizer: Any, parent: QWidget | None = None, n_ctx: int | None = None,
                 settings: QSettings | None = None, job_runner: Callable | None = None) -> None:
        """``job_runner(kind, function, on_done, on_failed)`` builds off the GUI thread (the worker's
        ``prepare``); without one the dialog builds in place. ``settings`` remembers the form."""
        super().__init__(parent)
        self.setWindowTitle("Build IOI prompt pairs")
        self.setObjectName("pair_builder")
        self.tokenizer = tokenizer
        self.n_ctx = n_ctx
        self.report: BuildReport | None = None
        self.qsettings = settings
        self.job_runner = job_runner
        self._building = False

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
        self.templates_hint = QLabel()
        self.templates_hint.setWordWrap(True)
        self.use_custom_button = QPushButton("Write my own templates (family: custom)")
        self.use_custom_button.setAutoDefault(False)
        self.use_custom_button.clicked.connect(
            lambda: self.family_combo.setCurrentIndex(self.family_combo.findData("custom")))
        templates_page = QWidget()
        templates_layout = QVBoxLayout(templates_page)
        templates_layout.setContentsMargins(4, 4, 4, 4)
        templates_layout.addWidget(self.templates_hint)
        hint_row = QHBoxLayout()
        hint_row.addWidget(self.use_custom_button)
        hint_row.addStretch(1)
        templates_layout.addLayout(hint_row)
        templates_layout.addWidget(self.templates_edit, 1)
        word_tabs.addTab(templates_page, "Custom templates")
        self.word_tabs = word_tabs

        settings_box = QWidget()
        settings_layout = QVBoxLayout(settings_box)
        settings_layout.addLayout(form)
        settings_layout.addWidget(QLabel("Word lists and templates"))
        settings_layout.addWidget(word_tabs, 1)

        self.counts_label = QLabel()
        self.counts_label.setWordWrap(True)
        self.counts_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.preview_model = PreviewModel(self)
        self.preview = QTableView()
        self.preview.setModel(self.preview_model)
        self.preview.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.preview.setAlternatingRowColors(True)
        # The full prompts wrap, with the words that differ highlighted, as in the prompt editor.
        self.preview_delegate = PromptTextDelegate(self.preview)
        for column in (0, 1):
            self.preview.setItemDelegateForColumn(column, self.preview_delegate)
        self.preview.setWordWrap(True)
        self.preview.verticalHeader().setSectionResizeMode(QHeaderView.Fixed)
        self.preview.verticalHeader().setDefaultSectionSize(self.preview.fontMetrics().lineSpacing() * 3 + 8)
        header = self.preview.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.Stretch)
        header.setSectionResizeMode(1, QHeaderView.Stretch)
        answer_width = self.preview.fontMetrics().horizontalAdvance(" Christopher") + 16
        for column in (2, 3):
            header.setSectionResizeMode(column, QHeaderView.Interactive)
            header.resizeSection(column, answer_width)
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
        self.buttons.accepted.connect(self._on_use_clicked)
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
        self._restore_form()
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
        """The built set of the current settings (None while building or when they build nothing)."""
        if self._timer.isActive() or self._building:
            return None
        return self.report.prompt_set if self.report is not None else None

    @property
    def building(self) -> bool:
        """True while the current settings are waiting to be built or being built."""
        return self._timer.isActive() or self._building

    def rebuild(self) -> None:
        """Build the current settings (in the job runner's thread) and refresh the preview when done."""
        self._timer.stop()
        family = self.family_combo.currentData()
        self.family_doc.setText(FAMILIES[family])
        self.corruption_doc.setText(CORRUPTIONS[self.corruption_combo.currentData()])
        custom = family == "custom"
        self.templates_edit.setEnabled(custom)
        self.use_custom_button.setVisible(not custom)
        self.templates_hint.setText(
            "Your templates, one per line: [A] is the indirect object (the answer, last), [B] the subject "
            "(at least twice), [C] a third name, [PLACE] and [OBJECT] words from the lists."
            if custom else
            "These templates are used only by the 'custom' family: choose custom under Template family "
            "(above) to write your own.")
        settings, tokenizer, n_ctx = self.settings(), self.tokenizer, self.n_ctx
        self._building = True
        self.buttons.button(QDialogButtonBox.Ok).setEnabled(False)
        self.counts_label.setText(f"Building {settings.n} pairs…")
        job = lambda _context: build_pairs(settings, tokenizer, n_ctx)  # noqa: E731
        if self.job_runner is None:
            try:
                report = job(None)
            except IOIError as error:
                self._on_build_failed(error)
                return
            self._on_built(report)
        else:
            self.job_runner(BUILD, job, self._on_built, self._on_build_failed)

    def _schedule(self) -> None:
        self._timer.start()
        self.buttons.button(QDialogButtonBox.Ok).setEnabled(False)

    def _on_built(self, report: BuildReport) -> None:
        self._building = False
        if self._timer.isActive():
            return  # the settings changed meanwhile: that build is on its way
        self.report = report
        self._show_report(report)

    def _on_build_failed(self, error: Any) -> None:
        self._building = False
        self.report = None
        if not self._timer.isActive():
            self._show_error(error)

    def _on_use_clicked(self) -> None:
        if self.prompt_set() is None:
            return
        self._save_form()
        self.accept()

    # -- remembered settings ------------------------------------------------------------

    def _form(self) -> dict:
        return {
            "family": self.family_combo.currentData(), "n": self.n_spin.value(),
            "corruption": self.corruption_combo.currentData(), "seed": self.seed_spin.value(),
            "symmetric": self.symmetric_check.isChecked(),
            "word_lists": {name: edit.toPlainText() for name, edit in self.word_edits.items()},
            "templates": self.templates_edit.toPlainText(),
        }

    def _save_form(self) -> None:
        if self.qsettings is not None:
            self.qsettings.setValue(_SETTINGS_KEY, json.dumps(self._form()))

    def _restore_form(self) -> None:
        """The last used settings; unknown or damaged entries keep the defaults."""
        raw = self.qsettings.value(_SETTINGS_KEY) if self.qsettings is not None else None
        try:
            form = json.loads(raw) if isinstance(raw, str) else {}
        except ValueError:
            form = {}
        if not isinstance(form, dict):
            return
        for combo, key in ((self.family_combo, "family"), (self.corruption_combo, "corruption")):
            index = combo.findData(form.get(key))
            if index >= 0:
                combo.setCurrentIndex(index)
        for spin, key in ((self.n_spin, "n"), (self.seed_spin, "seed")):
            value = form.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and spin.minimum() <= value <= spin.maximum():
                spin.setValue(value)
        if isinstance(form.get("symmetric"), bool):
            self.symmetric_check.setChecked(form["symmetric"])
        lists = form.get("word_lists") if isinstance(form.get("word_lists"), dict) else {}
        for name, edit in self.word_edits.items():
            if isinstance(lists.get(name), str):
                edit.setPlainText(lists[name])
        if isinstance(form.get("templates"), str):
            self.templates_edit.setPlainText(form["templates"])

    def _show_error(self, error: Any) -> None:
        self.preview_model.set_pairs(())
        self.counts_label.setText(f"<span style='color:#d32f2f'><b>{error.message}</b></span><br>{error.hint}")
        self.rejected_label.setText("")
        self.buttons.button(QDialogButtonBox.Ok).setEnabled(False)

    def _show_report(self, report: BuildReport) -> None:
        pairs = report.prompt_set.pairs
        self.preview_model.set_pairs(pairs[:PREVIEW_ROWS])
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
