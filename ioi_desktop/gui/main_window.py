"""The main window: inputs on the left, linked result panels on the right.

It wires things together and holds no analysis logic and no state of its own
beyond the window: the app's state (model, prompt set, options, selection,
results) lives in one Qt-free :class:`~ioi_desktop.core.workbench.Workbench`.

- the model picker and the prompt editor feed the worker (``gui.worker``),
  which loads models and runs analyses through ``core.runner`` in its thread;
- the worker's reports go into the workbench's results store (partial rows,
  each analysis's result as it finishes, the end of the run); the result
  panels observe the store for the result types they render, so after a
  Cancel every analysis that finished is shown;
- the worker's signals also drive the progress bar (done/total, current
  step, ETA) and plain-language error messages;
- every result panel from ``gui.panels.RESULT_PANELS`` gets its own dock and
  the one shared :class:`~ioi_desktop.core.selection.SelectionModel`; panels
  never talk to each other or to this window except through it;
- sessions (``core.session``) save and restore the model spec, prompt set,
  settings, results, selection, layout and view state (current tabs, each
  panel's choices such as the patching grid and mode) in one file; reading and
  writing them, building pair sets and validating them run on the worker's
  input thread, so nothing that grows with the prompt count or the model runs
  on the GUI thread;
- prompt-set edits are undoable (the prompt editor's ``QUndoStack``, in the
  Edit menu); replacing an edited set and quitting with unsaved work ask first;
- Help holds an offline guide, a glossary and the bundled model's card
  (``gui.dialogs.help``);
- QSettings remembers geometry, dock layout, recent sessions, the last model
  and the chosen analyses.
"""

from __future__ import annotations

import base64
import json
import re
import time
from pathlib import Path
from typing import Any

import shiboken6
from PySide6.QtCore import QByteArray, QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QTabBar,
    QToolBar,
    QWidget,
)

from ioi_desktop import APP_NAME, __version__
from ioi_desktop.core.analyses import ANALYSES
from ioi_desktop.core.errors import IOIError
from ioi_desktop.core.workbench import Workbench
from ioi_desktop.gui.dock_sizes import (
    ATTENTION_HEIGHT,
    ATTENTION_SHARE,
    INPUT_SHARE,
    INPUT_WIDTH,
    DockExtent,
    keep_to_its_height,
)
from ioi_desktop.gui.panels.model_picker import ModelPicker
from ioi_desktop.gui.panels.prompt_editor import PromptEditor
from ioi_desktop.gui.worker import LOAD_MODEL, JobFailure, Worker, freeze_long_lived_objects

MAX_RECENT = 8
SESSION_FILTER = "IOI Desktop sessions (*.ioisession)"
PAIRS_FILTER = "Prompt pairs (*.json *.csv)"
_LAYOUT_VERSION = 1


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "panel"


def _format_seconds(seconds: float) -> str:
    if seconds < 0:
        return "estimating…"
    if seconds < 60:
        return f"{seconds:.0f} s left"
    return f"{seconds / 60:.0f} min {seconds % 60:.0f} s left"


class MainWindow(QMainWindow):
    """The IOI Desktop window. ``start()`` loads the model and opens the notebook set."""

    results_shown = Signal(object)  # RunResults, after every panel has rendered them
    session_opened = Signal(str)
    session_open_failed = Signal(str)  # the message shown
    export_finished = Signal(list)  # the paths written (File > Export, ``start_export``)
    export_failed = Signal(str)  # the message shown
    session_saved = Signal(str)
    session_save_failed = Signal(str)

    def __init__(self, settings: QSettings | None = None, parent: QWidget | None = None,
                 build_panels: bool = True) -> None:
        """``build_panels=False`` defers the result panels to :meth:`build_result_panels`.

        Creating the pyqtgraph panels takes about a second, so the launcher
        shows the window first and builds them right after.
        """
        super().__init__(parent)
        self.setWindowTitle(APP_NAME)
        self.setObjectName("main_window")
        self.settings = settings if settings is not None else QSettings()
        self.workbench = Workbench()
        self.selection = self.workbench.selection
        self.worker = Worker(self)
        self.message_box: QMessageBox | None = None
        self.about_box: QMessageBox | None = None
        self.pair_builder: QWidget | None = None
        self.help_dialog: QWidget | None = None
        self.confirm_box: QMessageBox | None = None  # "discard unsaved changes?" (replace, quit)
        self._unsaved_results = False  # results computed since the last save or open
        self._quit_confirmed = False
        self._close_after_save = False
        self._export_run = None  # the File > Export under way (``start_export``)
        self._session_opening = False  # between the two turns that restore an opened session
        self._loading_spec: Any = None
        self.options_dialog: QWidget | None = None
        self.notebook_check_dialog: QWidget | None = None  # Help > Reproduce the Exploratory Analysis Demo
        self.panel_errors: list[str] = []  # panel bugs caught while drawing (shown in the status bar)
        self._run_started = 0.0
        self._last_run_seconds = 0.0
        self._default_state = QByteArray()

        self.model_picker = ModelPicker()
        self.prompt_editor = PromptEditor(self.selection)
        self.panels: list[QWidget] = []
        self.docks: dict[str, QDockWidget] = {}
        self._build_input_docks()
        self._build_status_bar()
        self.actions_by_name: dict[str, QAction] = {}
        self._build_actions()
        self._build_menus()
        self._build_tool_bar()
        self._connect()
        self._restore_settings()
        self._update_run_enabled()
        if build_panels:
            self.build_result_panels()
        else:
            self.setCentralWidget(QLabel("Preparing the result panels…", alignment=Qt.AlignCenter))

    # ------------------------------------------------------------------ state (in the workbench)

    @property
    def handle(self) -> Any:
        """The loaded ``core.models.ModelHandle`` (None before a model has loaded)."""
        return self.workbench.handle

    @property
    def results(self) -> Any:
        """The ``RunResults`` of every finished analysis shown (None when there are none)."""
        return self.workbench.results.run_results()

    @property
    def read_only(self) -> bool:
        return self.workbench.read_only

    @property
    def session_path(self) -> Path | None:
        return self.workbench.session_path

    # ------------------------------------------------------------------ building

    def _add_dock(self, widget: QWidget, title: str, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock_{_slug(title)}")
        dock.setWidget(widget)
        dock.setFeatures(QDockWidget.DockWidgetMovable | QDockWidget.DockWidgetFloatable | QDockWidget.DockWidgetClosable)
        self.addDockWidget(area, dock)
        self.docks[title] = dock
        return dock

    def _build_input_docks(self) -> None:
        self.setDockNestingEnabled(True)
        self.setCorner(Qt.BottomLeftCorner, Qt.LeftDockWidgetArea)
        self.setCorner(Qt.TopLeftCorner, Qt.LeftDockWidgetArea)
        model_dock = self._add_dock(self.model_picker, ModelPicker.TITLE, Qt.LeftDockWidgetArea)
        prompt_dock = self._add_dock(self.prompt_editor, PromptEditor.TITLE, Qt.LeftDockWidgetArea)
        self.splitDockWidget(model_dock, prompt_dock, Qt.Vertical)
        self.resizeDocks([model_dock, prompt_dock], [220, 600], Qt.Vertical)
        self.resize(1500, 950)
        self.resizeDocks([model_dock], [470], Qt.Horizontal)
        # A resized window gives its extra (or missing) width to the results, and extra height to the prompts.
        keep_to_its_height(self.model_picker)
        self._dock_extents = [DockExtent(self, model_dock, self._right_column_dock, Qt.Horizontal,
                                         Qt.LeftDockWidgetArea, INPUT_SHARE, initial=INPUT_WIDTH)]

    def _right_column_dock(self) -> QDockWidget | None:
        """A result dock docked on the right and laid out now (the input column is sized against it):
        one not in a tab group (the attention viewer), else the raised tab. A tab in the background
        keeps the size it had when it was last raised, which would skew the split."""
        docks = self._right_column_docks()
        alone = [dock for dock in docks if not self.tabifiedDockWidgets(dock)]
        return next(iter(alone or docks), None)

    def _result_tab_dock(self, below: QDockWidget) -> QDockWidget | None:
        """The result tab raised above the dock ``below`` (the attention viewer; its height is kept against it)."""
        return next((dock for dock in self._right_column_docks() if dock is not below), None)

    def _right_column_docks(self) -> list[QDockWidget]:
        """The shown result docks on the right; of a tab group only the raised tab."""
        inputs = (ModelPicker.TITLE, PromptEditor.TITLE)
        raised = set()
        for bar in self.findChildren(QTabBar):
            if bar.parent() is self and bar.count():
                raised.add(bar.tabText(bar.currentIndex()))
        return [dock for title, dock in self.docks.items() if title not in inputs and dock.isVisible()
                and not dock.isFloating() and self.dockWidgetArea(dock) == Qt.RightDockWidgetArea
                and (not self.tabifiedDockWidgets(dock) or dock.windowTitle() in raised)]

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        for extent in self._dock_extents:
            extent.window_resized()

    def restoreState(self, state, version: int = 0) -> bool:  # noqa: N802 - Qt override
        """Restore a dock layout (settings, a session); its dock sizes become the ones kept on resizes."""
        restored = super().restoreState(state, version)
        for extent in self._dock_extents:
            extent.adopt_soon()
        return restored

    def build_result_panels(self) -> None:
        """Create one dock per result panel, then restore the remembered dock layout."""
        from ioi_desktop.gui.panels import RESULT_PANELS

        if self.panels:
            return
        if self.centralWidget() is not None:
            self.takeCentralWidget().deleteLater()
        # Result panels share the right side as tabs; the attention viewer sits below them so
        # clicking a head in any heatmap shows its pattern without switching tabs. (Split
        # before tabifying: Qt adds a split of a tabbed dock as one more tab.)
        docks = []
        for panel_class in RESULT_PANELS:
            panel = panel_class(self.selection)
            panel.observe(self.workbench.results)
            panel.draw_failed.connect(self._on_panel_failed)
            if hasattr(panel, "run_requested"):
                panel.run_requested.connect(self.run_only)
            if hasattr(panel, "worker_idle"):
                self.worker.busy_changed.connect(lambda busy, p=panel: None if busy else p.worker_idle())
            self.panels.append(panel)
            dock = self._add_dock(panel, panel_class.TITLE, Qt.RightDockWidgetArea)
            # A panel in a background tab draws only when its tab is raised (see ResultPanel._drawing_deferred).
            dock.visibilityChanged.connect(lambda visible, p=panel: p.draw_soon() if visible else None)
            self.view_menu.insertAction(self._view_separator, dock.toggleViewAction())
            docks.append((panel_class, dock))
        below = [dock for panel_class, dock in docks if "attention" in panel_class.analyses()][:1]
        tabs = [dock for _, dock in docks if dock not in below]
        if tabs and below:
            self.splitDockWidget(tabs[0], below[0], Qt.Vertical)
            self.resizeDocks([tabs[0], below[0]], [950 - ATTENTION_HEIGHT, ATTENTION_HEIGHT], Qt.Vertical)
            # The attention viewer keeps its height (a 15-token pattern on screen) when the window is resized.
            attention = DockExtent(self, below[0], lambda: self._result_tab_dock(below[0]), Qt.Vertical,
                                   Qt.RightDockWidgetArea, ATTENTION_SHARE, initial=ATTENTION_HEIGHT)
            self._dock_extents.append(attention)
            attention.restore_soon()
        for dock in tabs[1:]:
            self.tabifyDockWidget(tabs[0], dock)
        if tabs:
            tabs[0].raise_()
        self.resizeDocks([self.docks[ModelPicker.TITLE]], [470], Qt.Horizontal)
        self._default_state = self.saveState(_LAYOUT_VERSION)
        # The window and its panels live as long as the app: leave them out of full garbage collections.
        freeze_long_lived_objects()
        state = self.settings.value("window/state")
        if isinstance(state, QByteArray):
            self.restoreState(state, _LAYOUT_VERSION)
        elif tabs:
            # Once the new docks are laid out: the inputs take about a third of the width
            # (470 px at most), so on a 1280 px laptop the result panels keep ~830 px.
            QTimer.singleShot(0, lambda: self._fit_input_width(tabs[0]))

    def _fit_input_width(self, right: QDockWidget) -> None:
        inputs = min(470, self.width() * 35 // 100)
        # Qt honours the width only when a dock on each side is named.
        self.resizeDocks([self.docks[ModelPicker.TITLE], right], [inputs, self.width() - inputs], Qt.Horizontal)

    def _build_status_bar(self) -> None:
        self.step_label = QLabel("")
        self.eta_label = QLabel("")
        self.progress_bar = QProgressBar()
        self.progress_bar.setMaximumWidth(260)
        self.progress_bar.setFormat("%v / %m")
        self.progress_bar.hide()
        self.read_only_label = QLabel("")
        self.read_only_label.setStyleSheet("color: #c62828; font-weight: bold;")
        self.read_only_label.hide()
        status = self.statusBar()
        status.addWidget(self.step_label, 1)
        status.addPermanentWidget(self.read_only_label)
        status.addPermanentWidget(self.eta_label)
        status.addPermanentWidget(self.progress_bar)

    def _action(self, name: str, text: str, slot, shortcut: QKeySequence | str | None = None, tip: str = "") -> QAction:
        action = QAction(text, self)
        action.setObjectName(f"action_{name}")
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
        if tip:
            action.setStatusTip(tip)
            action.setToolTip(tip)
        action.triggered.connect(lambda _checked=False: slot())
        self.addAction(action)
        self.actions_by_name[name] = action
        return action

    def _build_actions(self) -> None:
        a = self._action
        a("open_session", "&Open session…", self.open_session_dialog, QKeySequence.Open, "Open a saved session (Ctrl+O)")
        a("save_session", "&Save session", self.save_session, QKeySequence.Save, "Save the model, prompts, results and layout (Ctrl+S)")
        a("save_session_as", "Save session &as…", self.save_session_as, QKeySequence.SaveAs)
        a("import_pairs", "&Import pairs…", self.import_pairs_dialog, "Ctrl+I", "Read prompt pairs from a JSON or CSV file")
        a("export_pairs", "Export &pairs…", self.export_pairs_dialog, None, "Write the prompt pairs to a JSON or CSV file")
        a("export_all", "&Export figures and data…", self.export_all_dialog, "Ctrl+E", "Save every panel as PNG/SVG and its data as CSV (Ctrl+E)")
        a("quit", "&Quit", self.request_quit, QKeySequence.Quit)
        a("load_model", "&Load model", self._on_load_requested_from_picker, "Ctrl+L", "Load the model chosen in the Model panel (Ctrl+L)")
        a("build_pairs", "&Build pairs…", self.open_pair_builder, "Ctrl+B", "Generate IOI prompt pairs from templates (Ctrl+B)")
        a("add_pair", "&Add pair", self.prompt_editor.add_pair, "Ctrl+N")
        a("remove_pair", "&Remove pair", self.prompt_editor.remove_pair)
        a("move_pair_up", "Move pair &up", lambda: self.prompt_editor.move_pair(-1), "Alt+Up")
        a("move_pair_down", "Move pair &down", lambda: self.prompt_editor.move_pair(+1), "Alt+Down")
        a("notebook_set", "Open the &notebook set", lambda: self.confirm_replace("open the notebook set", self.open_notebook_set),
          None, "The TransformerLens demo's 8 prompt pairs")
        a("edit_selected_pair", "&Edit the selected pair", self._focus_pair_editor, "F2",
          "Edit the selected pair's full text in the pane under the table (F2)")
        a("run", "&Run", self.run, "Ctrl+R", "Run the selected analyses on the prompt set (Ctrl+R)")
        a("cancel", "&Cancel", self.cancel, Qt.Key_Escape, "Stop the current job (Esc)")
        a("run_options", "&Options…", self.open_run_options, None,
          "Choose the analyses, the patching grids, the batch size, top tokens and head-type settings")
        a("ablate_pinned", "A&blate pinned heads",
          lambda: self.run_only("ablation", {"heads": self.selection.pinned_text(),
                                             "positions": self.selection.pinned_positions}), None,
          "Ablate the pinned heads (Ctrl/Cmd-click heads to pin them; none pinned: the backup preset)")
        a("path_patch_selected", "&Path patch from the selected head", self._path_patch_selected, None,
          "Direct path patching from the selected head into every later head's q, k, v and the logits")
        a("reset_layout", "&Reset layout", self.reset_layout)
        a("about", "&About IOI Desktop", self.show_about)
        a("help_guide", "IOI Desktop &guide", lambda: self.show_help("guide"), QKeySequence.HelpContents,
          "What each panel shows, how to read it and the notebook step it corresponds to (F1)")
        a("help_glossary", "G&lossary", lambda: self.show_help("glossary"), None,
          "IO, S1, S2, END, logit difference, patching score and the other words the panels use")
        a("help_model_card", "Bundled &model card (ioi-mini)", lambda: self.show_help("model_card"), None,
          "How the bundled model was trained and what its circuit looks like")
        a("reproduce_notebook", "Reproduce the Exploratory Analysis &Demo", self.reproduce_notebook, None,
          "Load GPT-2 small from the Hugging Face cache, run the TransformerLens demo's steps on its 8 pairs and "
          "compare every published number with ours")
        self.actions_by_name["cancel"].setEnabled(False)
        stack = self.prompt_editor.undo_stack
        for name, action, keys in (("undo", stack.createUndoAction(self, "&Undo"), QKeySequence.Undo),
                                   ("redo", stack.createRedoAction(self, "&Redo"), QKeySequence.Redo)):
            action.setObjectName(f"action_{name}")
            action.setShortcut(QKeySequence(keys))
            action.setStatusTip(f"{name.capitalize()} the last prompt-set edit")
            self.addAction(action)
            self.actions_by_name[name] = action
        self.analysis_actions: dict[str, QAction] = {}
        for info in ANALYSES:
            action = QAction(info.title, self)
            action.setObjectName(f"analysis_{info.name}")
            action.setCheckable(True)
            action.setChecked(True)
            action.setStatusTip(info.description)
            action.setToolTip(info.description)
            self.analysis_actions[info.name] = action

    def _build_menus(self) -> None:
        acts = self.actions_by_name
        menu = self.menuBar()
        file_menu = menu.addMenu("&File")
        file_menu.addActions([acts["open_session"]])
        self.recent_menu = file_menu.addMenu("Open &recent")
        file_menu.addActions([acts["save_session"], acts["save_session_as"]])
        file_menu.addSeparator()
        file_menu.addActions([acts["import_pairs"], acts["export_pairs"], acts["export_all"]])
        file_menu.addSeparator()
        file_menu.addAction(acts["quit"])
        edit_menu = menu.addMenu("&Edit")
        edit_menu.addActions([acts["undo"], acts["redo"]])
        edit_menu.addSeparator()
        edit_menu.addActions([acts["edit_selected_pair"], acts["add_pair"], acts["remove_pair"],
                              acts["move_pair_up"], acts["move_pair_down"]])
        model_menu = menu.addMenu("&Model")
        model_menu.addAction(acts["load_model"])
        prompts_menu = menu.addMenu("&Prompts")
        prompts_menu.addActions([acts["build_pairs"], acts["notebook_set"]])
        prompts_menu.addSeparator()
        prompts_menu.addActions([acts["import_pairs"], acts["export_pairs"]])
        run_menu = menu.addMenu("&Run")
        run_menu.addActions([acts["run"], acts["cancel"]])
        run_menu.addSeparator()
        analyses_menu = run_menu.addMenu("&Analyses")
        analyses_menu.setToolTipsVisible(True)
        analyses_menu.addActions(list(self.analysis_actions.values()))
        run_menu.addAction(acts["run_options"])
        run_menu.addSeparator()
        run_menu.addActions([acts["ablate_pinned"], acts["path_patch_selected"]])
        self.view_menu = menu.addMenu("&View")
        for dock in self.docks.values():
            self.view_menu.addAction(dock.toggleViewAction())
        self._view_separator = self.view_menu.addSeparator()
        self.view_menu.addAction(acts["reset_layout"])
        help_menu = menu.addMenu("&Help")
        help_menu.addActions([acts["help_guide"], acts["help_glossary"], acts["help_model_card"]])
        help_menu.addSeparator()
        help_menu.addAction(acts["reproduce_notebook"])
        help_menu.addSeparator()
        help_menu.addAction(acts["about"])
        self._refresh_recent_menu()

    def _build_tool_bar(self) -> None:
        bar = QToolBar("Main")
        bar.setObjectName("toolbar_main")
        bar.setMovable(False)
        bar.setToolButtonStyle(Qt.ToolButtonTextOnly)
        acts = self.actions_by_name
        bar.addActions([acts["run"], acts["cancel"]])
        bar.addSeparator()
        bar.addActions([acts["ablate_pinned"], acts["path_patch_selected"]])
        bar.addSeparator()
        bar.addActions([acts["build_pairs"], acts["open_session"], acts["save_session"], acts["export_all"]])
        self.addToolBar(Qt.TopToolBarArea, bar)

    def _connect(self) -> None:
        w = self.worker
        w.job_started.connect(self._on_job_started)
        w.busy_changed.connect(self._on_busy_changed)
        w.job_refused.connect(self._on_job_refused)
        w.progress_changed.connect(self._on_progress_changed)
        w.progress_changed.connect(lambda _done, _total, message, _eta: self.workbench.results.note_step(message))
        w.inventory_found.connect(lambda inventory: self.model_picker.set_inventory(inventory.devices, inventory.local_models))
        w.model_loaded.connect(self._on_model_loaded)
        w.model_load_failed.connect(self._on_model_load_failed)
        w.rows_ready.connect(self.workbench.results.add_rows)
        w.run_meta_ready.connect(self.workbench.results.set_meta)
        w.result_ready.connect(lambda _name, result: self.workbench.results.add_result(result))
        w.run_finished.connect(self._on_run_finished)
        w.run_failed.connect(self._on_run_failed)
        w.run_cancelled.connect(self._on_run_cancelled)
        w.notebook_check_finished.connect(self._on_notebook_check_finished)
        w.preparing_changed.connect(lambda _preparing: self._update_run_enabled())
        self.model_picker.load_requested.connect(self.load_model)
        self.prompt_editor.set_job_runner(self.worker.prepare)
        self.prompt_editor.validity_changed.connect(lambda _ok, _why: self._update_run_enabled())
        self.prompt_editor.undo_stack.cleanChanged.connect(self._on_clean_changed)
        # An edited pair makes results of the old set stale (the panels say so; Run re-runs them).
        self.prompt_editor.prompt_set_changed.connect(
            lambda: self.workbench.set_prompt_set(self.prompt_editor.prompt_set()))
        self.prompt_editor.build_requested.connect(self.open_pair_builder)
        self.prompt_editor.import_requested.connect(self.import_pairs_dialog)
        self.prompt_editor.export_requested.connect(self.export_pairs_dialog)

    # ------------------------------------------------------------------ startup

    def start(self, load_model: bool = True) -> None:
        """Open the notebook prompt set and (optionally) load the last-used model."""
        from ioi_desktop.core.pairs import notebook_prompt_set

        self.set_prompt_set(notebook_prompt_set(), undoable=False)
        if load_model:
            self.load_model(self.model_picker.spec())

    def open_notebook_set(self) -> None:
        from ioi_desktop.core.pairs import notebook_prompt_set

        self.set_prompt_set(notebook_prompt_set(), text="Open the notebook set")

    def set_prompt_set(self, prompt_set: Any, undoable: bool = True, text: str = "Replace the prompt set") -> None:
        """Show ``prompt_set`` in the editor (an undoable step unless ``undoable`` is False)."""
        self.selection.clear()
        self.prompt_editor.set_prompt_set(prompt_set, undoable=undoable, text=text)
        self.workbench.set_prompt_set(prompt_set)

    # ------------------------------------------------------------------ unsaved work

    @property
    def has_unsaved_work(self) -> bool:
        """An edited or new prompt set, or results, not saved in a session since."""
        return self.prompt_editor.has_unsaved_edits or self._unsaved_results

    def _ask(self, title: str, text: str, hint: str, buttons: list[tuple[str, QMessageBox.ButtonRole]],
             answered) -> QMessageBox:
        """A window-modal question that does not block: ``answered(role)`` runs with the button's role."""
        if self.confirm_box is not None:
            self.confirm_box.close()
        box = QMessageBox(QMessageBox.Question, title, text, QMessageBox.NoButton, self)
        box.setInformativeText(hint)
        made = {box.addButton(label, role): role for label, role in buttons}
        box.setDefaultButton(next(iter(made)))
        box.setWindowModality(Qt.WindowModal)
        box.buttonClicked.connect(lambda button: answered(made.get(button, QMessageBox.RejectRole)))
        box.open()
        self.confirm_box = box
        return box

    def confirm_replace(self, what: str, then) -> bool:
        """Run ``then()`` now when the prompt set has no unsaved edits, else after the user agrees.

        Returns True when ``then`` ran at once."""
        if not self.prompt_editor.has_unsaved_edits:
            then()
            return True
        self._ask(
            "Discard unsaved changes?",
            f"The prompt set has unsaved changes. Replace it to {what}?",
            "Edit > Undo brings the replaced set back; File > Save session or Export pairs keeps it in a file.",
            [("Replace", QMessageBox.DestructiveRole), ("Cancel", QMessageBox.RejectRole)],
            lambda role: then() if role == QMessageBox.DestructiveRole else None,
        )
        return False

    def request_quit(self) -> None:
        """File > Quit: close now, or first ask whether to save unsaved work (a new set, its results)."""
        self.prompt_editor.commit_detail()
        if not self.has_unsaved_work:
            self._quit_confirmed = True
            self.close()
            return
        what = " and ".join(part for part, unsaved in (
            ("the prompt set has unsaved changes", self.prompt_editor.has_unsaved_edits),
            ("the results are not saved", self._unsaved_results)) if unsaved)

        def answered(role) -> None:
            if role == QMessageBox.AcceptRole:
                self._close_after_save = True
                if not self.save_session():
                    self._close_after_save = False
            elif role == QMessageBox.DestructiveRole:
                self._quit_confirmed = True
                self.close()

        self._ask("Save before quitting?", f"Quit IOI Desktop? {what[0].upper()}{what[1:]}.",
                  "Save keeps the model choice, the prompt set, the results and the layout in a session file.",
                  [("Save…", QMessageBox.AcceptRole), ("Discard", QMessageBox.DestructiveRole),
                   ("Cancel", QMessageBox.RejectRole)], answered)

    def _on_clean_changed(self, _clean: bool) -> None:
        self._update_title()

    def _update_title(self) -> None:
        name = self.session_path.name if self.session_path is not None else ""
        mark = "*" if self.prompt_editor.has_unsaved_edits else ""
        self.setWindowTitle(f"{name}{mark} — {APP_NAME}" if name else f"{APP_NAME}{' *' if mark else ''}")

    def _focus_pair_editor(self) -> None:
        dock = self.docks[PromptEditor.TITLE]
        dock.show()
        dock.raise_()
        self.prompt_editor.clean_edit.setFocus()

    # ------------------------------------------------------------------ model

    def load_model(self, spec: Any) -> bool:
        """Load ``spec`` in the worker; the picker shows what is being loaded."""
        if not self.worker.busy:  # a busy worker refuses, with the reason in the status bar
            self.model_picker.set_spec(spec)
            self._loading_spec = spec
        return self.worker.load_model(spec)

    def _on_load_requested_from_picker(self) -> None:
        self.load_model(self.model_picker.spec())

    def _on_model_loaded(self, handle: Any) -> None:
        self.workbench.set_model(handle)
        self._set_read_only(False, "")
        self.model_picker.set_loaded(handle.info)
        self.prompt_editor.set_tokenizer(handle.tokenizer, handle.info.n_ctx, handle.info.prepend_bos)
        self.settings.setValue("model/spec", json.dumps(handle.spec.to_dict()))
        self.step_label.setText(f"Model ready: {handle.info.summary()}")
        self._update_run_enabled()

    def _on_model_load_failed(self, failure: JobFailure) -> None:
        # A folder that did not load leaves the list; the picker shows the model still in use.
        if self._loading_spec is not None:
            loaded = self.handle.spec if self.handle is not None else None
            self.model_picker.forget_source(self._loading_spec.source, loaded)
        self.model_picker.set_failed(failure.message, failure.hint)
        self.step_label.setText(f"Loading the model failed: {failure.message}")
        if failure.details:  # a bug, not a bad model: offer the details for a report
            self.show_message("Loading the model failed", failure.message, failure.hint, failure.details)
        self._update_run_enabled()

    # ------------------------------------------------------------------ running

    def selected_analyses(self) -> list[str]:
        return [name for name, action in self.analysis_actions.items() if action.isChecked()]

    def _inputs_blocked_reason(self) -> str:
        """Why no analysis can run now: read-only session, no model, invalid prompts ('' when it can)."""
        if self._session_opening:
            return "A session is opening; Run is available in a moment."
        if self.read_only:
            return "This session is read-only because its model is not on this machine; load a model to run."
        if self.handle is None:
            return "Run is available once a model has loaded."
        if not self.prompt_editor.valid:
            return self.prompt_editor.invalid_reason
        return ""

    def run_blocked_reason(self) -> str:
        """Why Run cannot start now ('' when it can)."""
        if not self._inputs_blocked_reason() and not self.selected_analyses():
            return "No analysis is selected (Run > Analyses)."
        return self._inputs_blocked_reason()

    def run(self) -> bool:
        """Start the selected analyses; False (with the reason shown) if it cannot start."""
        reason = self.run_blocked_reason()
        if reason:
            self.step_label.setText(reason)
            return False
        self.workbench.set_run_settings(analyses=self.selected_analyses())
        self.workbench.set_prompt_set(self.prompt_editor.prompt_set())
        # Only what changed re-runs: results still matching the model, prompts and options stay.
        analyses, keep_others = self.workbench.analyses_to_run()
        return self._start(self.workbench.run_request(only=analyses), keep_others=keep_others)

    def run_only(self, analysis: str, changes: dict) -> bool:
        """Run one analysis with these option changes (a panel's Ablate / Path patch action),
        keeping every other result shown; False (with the reason shown) if it cannot start.
        The analyses ticked for Run do not matter here."""
        from ioi_desktop.core.workbench import RunRequest

        reason = self._inputs_blocked_reason()
        if reason:
            self.step_label.setText(reason)
            return False
        current = self.workbench.options[analysis]
        try:
            options = type(current).from_dict({**current.to_dict(), **changes})
        except IOIError as error:
            self._report("Cannot run", error)
            return False
        self.workbench.set_options(analysis, options)
        return self._start(RunRequest((analysis,), {analysis: options}, self.workbench.batch_size), keep_others=True)

    def _start(self, request: Any, keep_others: bool) -> bool:
        """Hand ``request`` to the worker on the current prompt set, then ready the results store."""
        prompt_set = self.prompt_editor.prompt_set()
        self.workbench.set_prompt_set(prompt_set)
        if not self.worker.run_analyses(self.handle, prompt_set, request):
            return False
        # The worker's reports are queued to this thread, so none arrives before the store is ready.
        self._run_started = time.monotonic()
        self.workbench.begin_run(request, keep_others=keep_others)
        return True

    def _path_patch_selected(self) -> bool:
        layer, head = self.selection.layer, self.selection.head
        if layer is None or head is None:
            self.step_label.setText("Select a head first (click it in any head map).")
            return False
        return self.run_only("path_patching", {"senders": f"{layer}.{head}", "receiver_head": "",
                                               "receivers": ["q", "k", "v", "logits"]})

    def reproduce_notebook(self, spec: Any = None, reference_path: Any = None) -> bool:
        """Help > Reproduce the Exploratory Analysis Demo: GPT-2 small (default) against the published numbers.

        The model becomes the app's model, the notebook set is opened and the
        panels show the run; a dialog shows the comparison table.
        """
        from ioi_desktop.core.models import ModelSpec
        from ioi_desktop.core.notebook_check import load_reference, missing_model_message

        spec = spec or ModelSpec(source="gpt2")
        missing = missing_model_message(spec.source)
        if missing is not None:
            self.step_label.setText("GPT-2 small is not on this machine.")
            self.show_message("Reproduce the Exploratory Analysis Demo", missing)
            return False
        try:
            reference = load_reference(reference_path)
        except IOIError as error:
            self._report("Reproduce the Exploratory Analysis Demo", error)
            return False
        self._run_started = time.monotonic()
        return self.worker.reproduce_notebook(spec, reference)

    def _on_notebook_check_finished(self, check: Any) -> None:
        from ioi_desktop.gui.dialogs.notebook_check import NotebookCheckDialog

        self._on_model_loaded(check.handle)
        self.open_notebook_set()
        self.show_results(check.results)
        comparison = check.comparison
        self.step_label.setText(f"Notebook check: {comparison.n_passed} of {len(comparison.rows)} published numbers agree.")
        self.notebook_check_dialog = NotebookCheckDialog(comparison, check.handle.info.name, self)
        self.notebook_check_dialog.open()

    def cancel(self) -> None:
        if self.worker.cancel():
            self.step_label.setText("Cancelling… (stops after the current step)")

    def _on_job_started(self, kind: str) -> None:
        self.progress_bar.setRange(0, 0)
        self.progress_bar.show()
        self.eta_label.setText("")
        if kind == LOAD_MODEL:
            self.model_picker.set_loading("Loading the model…")
            self.step_label.setText("Loading the model…")
        else:
            self.step_label.setText("Running…")

    def _on_busy_changed(self, busy: bool) -> None:
        self.actions_by_name["cancel"].setEnabled(busy)
        self.model_picker.set_busy(busy)
        self.actions_by_name["load_model"].setEnabled(not busy)
        if not busy:
            self.progress_bar.hide()
            self.eta_label.setText("")
        self._update_run_enabled()

    def _on_job_refused(self, reason: str) -> None:
        self.step_label.setText(reason)

    def _on_progress_changed(self, done: int, total: int, message: str, eta: float) -> None:
        if total > 0:
            self.progress_bar.setRange(0, total)
            self.progress_bar.setValue(done)
        self.step_label.setText(message)
        self.eta_label.setText(_format_seconds(eta))
        if self.worker.current_kind == LOAD_MODEL:
            self.model_picker.set_loading(message)

    def _on_run_finished(self, run_results: Any) -> None:
        self._last_run_seconds = time.monotonic() - self._run_started
        self.workbench.results.end("finished", run_results)
        self._unsaved_results = True
        summary = f"Run finished in {self._last_run_seconds:.1f} s"
        logit_diff = run_results.get("logit_diff")
        if logit_diff is not None and logit_diff.mean_clean is not None:
            summary += f": mean logit difference {logit_diff.mean_clean:.3f}"
        failed = dict(run_results.meta.get("failed") or {})
        if failed:
            summary += f"; did not run: {', '.join(failed)} (see those panels)"
        for panel in self.panels:
            reasons = [failed[name] for name in panel.analyses() if name in failed]
            panel.mark_failed(" ".join(reasons))
            dock = self.docks.get(panel.TITLE)
            if dock is not None:
                dock.setWindowTitle(panel.TITLE + (" (did not run)" if reasons else ""))
        self.step_label.setText(summary)
        self.results_shown.emit(run_results)
        if failed:
            self._say_what_did_not_run(failed)

    def _say_what_did_not_run(self, failed: dict) -> None:
        """One non-blocking message for the analyses that did not run (the others' results are shown)."""
        from ioi_desktop.core.error_log import log_path

        sentences = [f"{name}: {reason}" if len(failed) > 1 else reason for name, reason in failed.items()]
        if len(failed) == 1:
            title, message, rest = f"{next(iter(failed))} did not run", sentences[0], []
        else:
            title = "Some analyses did not run"
            message = f"{len(failed)} analyses did not run: {', '.join(failed)}."
            rest = sentences
        hint = " ".join(rest + ["The other analyses' results are shown; the failed panels say why."])
        if any(" failed on " in reason for reason in failed.values()):  # a bug: its traceback is in the log
            hint += f" Details were written to {log_path()}."
        self.show_message(title, message, hint)

    def show_results(self, run_results: Any) -> None:
        """Show these results (e.g. from a file) in every panel, replacing what was shown."""
        self.workbench.results.replace(run_results)
        if run_results is not None:
            self.results_shown.emit(run_results)

    def _on_panel_failed(self, text: str) -> None:
        """A panel's bug must not stop the others or the run: record it and say so."""
        self.panel_errors.append(text)
        self.statusBar().showMessage(f"{text}; the other panels are fine. Please report this bug.", 15000)

    def _on_run_failed(self, failure: JobFailure) -> None:
        self.workbench.results.end("failed")
        self.step_label.setText(f"The run failed: {failure.message}")
        self.show_message("The run failed", failure.message, failure.hint, failure.details)

    def _on_run_cancelled(self) -> None:
        self.workbench.results.end("cancelled")
        self._unsaved_results = bool(self.workbench.results.analyses)
        finished = self.workbench.results.analyses
        titles = {info.name: info.title for info in ANALYSES}
        shown = ", ".join(titles[name] for name in finished) if finished else "nothing had finished"
        self.step_label.setText(f"Run cancelled; the panels show what had finished ({shown}).")

    def _update_run_enabled(self) -> None:
        reason = self.run_blocked_reason()
        run = self.actions_by_name["run"]
        # Disabled (not refused later) while a job runs or the set is checked: a click is never queued.
        run.setEnabled(not reason and not self.worker.busy)
        tip = reason or ("A job is running." if self.worker.busy else "Run the selected analyses (Ctrl+R)")
        run.setToolTip(tip)
        run.setStatusTip(tip)

    @property
    def last_run_seconds(self) -> float:
        return self._last_run_seconds

    # ------------------------------------------------------------------ messages

    def show_message(self, title: str, message: str, hint: str = "", details: str = "") -> QMessageBox:
        """A non-blocking warning with the cause and what to do; the app keeps working."""
        if self.message_box is not None:
            self.message_box.close()
        box = QMessageBox(QMessageBox.Warning, title, message, QMessageBox.Ok, self)
        if details:
            # The traceback is for bug reports: it goes to the log and the clipboard, not on screen.
            from ioi_desktop.core.error_log import write_error_log

            logged = write_error_log(f"{title}: {message}", details)
            if logged is not None:
                hint = f"{hint}\n\nDetails were written to {logged}.".strip()
            copy = box.addButton("Copy details", QMessageBox.ActionRole)
            # Copying must not close the message: drop the box's own close-on-click connection.
            copy.clicked.disconnect()
            copy.clicked.connect(lambda: QApplication.clipboard().setText(details))
            box.setProperty("details", details)
        box.setInformativeText(hint)
        box.setWindowModality(Qt.WindowModal)
        box.open()
        self.message_box = box
        return box

    def _report(self, title: str, error: IOIError) -> None:
        self.step_label.setText(f"{title}: {error.message}")
        self.show_message(title, error.message, error.hint)

    # ------------------------------------------------------------------ pairs

    def open_pair_builder(self) -> None:
        from ioi_desktop.gui.dialogs.pair_builder import PairBuilderDialog

        if self.handle is None:
            self.step_label.setText("The pair builder needs the model's tokenizer: wait until the model has loaded.")
            return
        dialog = PairBuilderDialog(self.handle.tokenizer, self, n_ctx=self.handle.info.n_ctx,
                                   settings=self.settings, job_runner=self.worker.prepare)
        self.pair_builder = dialog
        dialog.accepted.connect(lambda: self._use_built_pairs(dialog))
        dialog.open()

    def _use_built_pairs(self, dialog: Any) -> None:
        prompt_set = dialog.prompt_set()
        if prompt_set is not None:
            self.confirm_replace("use the built pairs",
                                 lambda: self.set_prompt_set(prompt_set, text=f"Use {len(prompt_set)} built pairs"))

    def open_run_options(self) -> None:
        """Run > Options…: the analyses and their options; OK applies them to the next run."""
        from ioi_desktop.gui.dialogs.analysis_options import AnalysisOptionsDialog

        self.workbench.set_run_settings(analyses=self.selected_analyses())
        dialog = AnalysisOptionsDialog(self.workbench.settings(), self)
        self.options_dialog = dialog
        dialog.accepted.connect(lambda: self.apply_run_settings(dialog.settings()))
        dialog.open()

    def run_settings(self) -> dict:
        """The run settings (analyses, batch size, every analysis's options) in the workbench's form."""
        self.workbench.set_run_settings(analyses=self.selected_analyses())
        return self.workbench.settings()

    def apply_run_settings(self, settings: dict) -> None:
        """Use these settings from now on; their analyses become Run > Analyses' checked ones."""
        from ioi_desktop.gui.dialogs.analysis_options import save_settings

        self.workbench.apply_settings(settings)
        for name, action in self.analysis_actions.items():
            action.setChecked(name in self.workbench.analyses)
        save_settings(self.settings, self.workbench.settings())
        self._update_run_enabled()

    def import_pairs_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import prompt pairs", "", PAIRS_FILTER)
        if path:
            self.confirm_replace(f"import {Path(path).name}", lambda: self.import_pairs(path))

    def import_pairs(self, path: str | Path) -> bool:
        from ioi_desktop.core.pairfiles import read_pairs

        try:
            prompt_set = read_pairs(path)
        except IOIError as error:
            self._report("Importing pairs failed", error)
            return False
        self.set_prompt_set(prompt_set, text=f"Import {Path(path).name}")
        self.step_label.setText(f"Imported {len(prompt_set)} pairs from {Path(path).name}")
        return True

    def export_pairs_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export prompt pairs", "pairs.json", PAIRS_FILTER)
        if path:
            self.export_pairs(path)

    def export_pairs(self, path: str | Path) -> bool:
        from ioi_desktop.core.pairfiles import write_pairs

        try:
            written = write_pairs(path, self.prompt_editor.prompt_set())
        except IOIError as error:
            self._report("Exporting pairs failed", error)
            return False
        self.step_label.setText(f"Wrote {len(self.prompt_editor.prompt_set())} pairs to {written}")
        return True

    # ------------------------------------------------------------------ sessions

    def _layout_state(self) -> dict:
        return {
            "geometry": base64.b64encode(bytes(self.saveGeometry())).decode("ascii"),
            "state": base64.b64encode(bytes(self.saveState(_LAYOUT_VERSION))).decode("ascii"),
            "view": self.view_state(),
        }

    def view_state(self) -> dict:
        """What the user looks at beyond the dock layout: the current tab of each tab group, each
        panel's own choices (``ResultPanel.view_state``: the patching grid and mode, ...)."""
        from PySide6.QtWidgets import QTabBar

        titles = set(self.docks)
        tabs = []
        for bar in self.findChildren(QTabBar):
            if bar.currentIndex() >= 0 and bar.tabText(bar.currentIndex()) in titles:
                tabs.append(bar.tabText(bar.currentIndex()))
        panels = {}
        for panel in self.panels:
            state = panel.view_state() if hasattr(panel, "view_state") else {}
            if state:
                panels[panel.TITLE] = state
        return {"current_tabs": sorted(tabs), "panels": panels}

    def restore_view_state(self, view: Any) -> None:
        if not isinstance(view, dict):
            return
        self._raise_tabs(view)
        panels = view.get("panels") if isinstance(view.get("panels"), dict) else {}
        for panel in self.panels:
            state = panels.get(panel.TITLE)
            if isinstance(state, dict) and hasattr(panel, "restore_view_state"):
                panel.restore_view_state(state)

    def _raise_tabs(self, view: Any) -> None:
        tabs = view.get("current_tabs") if isinstance(view, dict) else None
        for title in tabs if isinstance(tabs, list) else []:
            dock = self.docks.get(title) if isinstance(title, str) else None
            if dock is not None and dock.isVisible():
                dock.raise_()

    def current_session(self) -> Any:
        self.prompt_editor.commit_detail()
        if self.handle is None:
            self.workbench.model_spec = self.model_picker.spec()
        self.workbench.set_run_settings(analyses=self.selected_analyses())
        self.workbench.set_prompt_set(self.prompt_editor.prompt_set())
        return self.workbench.session(self._layout_state())

    def save_session(self) -> bool:
        if self.session_path is None:
            return self.save_session_as()
        return self.save_session_to(self.session_path)

    def save_session_as(self) -> bool:
        path, _ = QFileDialog.getSaveFileName(self, "Save session", "analysis.ioisession", SESSION_FILTER)
        return bool(path) and self.save_session_to(path)

    def save_session_to(self, path: str | Path) -> bool:
        """Write the session in the worker's input thread; ``session_saved`` (or ``session_save_failed``) follows."""
        from ioi_desktop.core.session import save_session

        session = self.current_session()  # references to immutable results: nothing is copied here
        saved_set = session.prompt_set
        self.step_label.setText(f"Saving the session to {Path(path).name}…")

        def done(written: Path) -> None:
            self.workbench.session_path = written
            self._add_recent(written)
            if self.prompt_editor.prompt_set() == saved_set:
                self.prompt_editor.mark_saved()
            self._unsaved_results = False
            self._update_title()
            self.step_label.setText(f"Saved the session to {written}")
            self.session_saved.emit(str(written))
            if self._close_after_save:
                self._quit_confirmed = True
                self.close()

        def failed(failure: JobFailure) -> None:
            self._close_after_save = False
            self.step_label.setText(f"Saving the session failed: {failure.message}")
            self.show_message("Saving the session failed", failure.message, failure.hint, failure.details)
            self.session_save_failed.emit(failure.message)

        self.worker.prepare("save_session", lambda _context: save_session(path, session), done, failed)
        return True

    def open_session_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open session", "", SESSION_FILTER)
        if path:
            self.confirm_replace(f"open {Path(path).name}", lambda: self.open_session(path))

    def open_session(self, path: str | Path) -> bool:
        """Read a session in the worker's input thread, then restore it without recomputing
        (read-only when its model is absent); ``session_opened`` or ``session_open_failed`` follows.
        False when it cannot start (a job is running)."""
        from ioi_desktop.core.session import load_session, model_availability

        if self.worker.busy:
            self.step_label.setText("Wait for the current job to finish (or cancel it with Esc) before opening a session.")
            return False

        def read(_context) -> tuple:
            session = load_session(path)
            return session, model_availability(session.model_spec)

        def failed(failure: JobFailure) -> None:
            self.step_label.setText(f"Opening the session failed: {failure.message}")
            self.show_message("Opening the session failed", failure.message, failure.hint, failure.details)
            self.session_open_failed.emit(failure.message)

        self.step_label.setText(f"Opening {Path(path).name}…")
        self.worker.prepare("open_session", read, lambda value: self._apply_session(path, *value), failed)
        return True

    def _apply_session(self, path: str | Path, session: Any, availability: tuple[bool, str]) -> None:
        from ioi_desktop.core.models import ModelSpec

        if self.worker.busy:
            self.step_label.setText("Not opened: a job started meanwhile. Open the session again when it has finished.")
            self.session_open_failed.emit("a job started meanwhile")
            return
        view = session.layout.get("view") if isinstance(session.layout, dict) else None
        self._session_opening = True
        self.prompt_editor.set_prompt_set(session.prompt_set, undoable=False)

        def layout() -> None:
            if not shiboken6.isValid(self):
                return
            # The layout and the current tabs first: panels in hidden tabs then draw only when shown.
            self._restore_layout(session.layout)
            self._raise_tabs(view)
            QTimer.singleShot(0, lambda: self._apply_session_results(path, session, availability, view))

        # Three short event-loop turns instead of one long one: the prompts, the layout, then (once Qt
        # has laid the restored docks out) the results; the panels then draw one per turn (DRAW_QUEUE).
        QTimer.singleShot(0, layout)

    def _apply_session_results(self, path: str | Path, session: Any, availability: tuple[bool, str],
                               view: Any) -> None:
        from ioi_desktop.core.models import ModelSpec

        if not shiboken6.isValid(self):
            return
        self._session_opening = False
        self.workbench.restore(session)
        for name, action in self.analysis_actions.items():
            action.setChecked(name in self.workbench.analyses)
        if session.results is not None:
            self.results_shown.emit(session.results)
        self.restore_view_state(view)
        self._unsaved_results = False
        spec = ModelSpec.from_dict(dict(session.model_spec))
        self.model_picker.set_spec(spec)
        available, why = availability
        if not available:
            self._set_read_only(True, f"Read-only: this session's model ({spec.source}) is not on this machine. {why}")
        else:
            self._set_read_only(False, "")
            if self.handle is None or self.handle.spec != spec:
                self.load_model(spec)
        self.workbench.session_path = Path(path)
        self._add_recent(self.session_path)
        self._update_title()
        if not self.read_only:
            self.step_label.setText(f"Opened {self.session_path.name}")
        self.session_opened.emit(str(path))

    def _restore_layout(self, layout: dict) -> None:
        state = layout.get("state") if isinstance(layout, dict) else None
        if isinstance(state, str):
            saved = QByteArray(base64.b64decode(state))
            # The same docks as now (a session saved from this layout): restoring them would only
            # invalidate and relayout the whole window, one long repaint.
            if saved != self.saveState(_LAYOUT_VERSION):
                self.restoreState(saved, _LAYOUT_VERSION)

    def _set_read_only(self, read_only: bool, note: str) -> None:
        self.workbench.read_only = read_only
        self.read_only_label.setText("Read-only session" if read_only else "")
        self.read_only_label.setToolTip(note)
        self.read_only_label.setVisible(read_only)
        self.prompt_editor.set_read_only(read_only)
        if read_only:
            self.step_label.setText(note)
            self.model_picker.set_failed(note, "The saved results are shown as they were; load a model to run again.")
        self._update_run_enabled()

    def _add_recent(self, path: Path) -> None:
        before = self._recent()
        recent = ([str(path)] + [p for p in before if p != str(path)])[:MAX_RECENT]
        if recent == before:
            return  # already first: writing it again would only rewrite the settings file on the GUI thread
        self.settings.setValue("recent_sessions", recent)
        self._refresh_recent_menu()

    def _recent(self) -> list[str]:
        value = self.settings.value("recent_sessions", [])
        if isinstance(value, str):
            return [value]
        return [str(v) for v in value or []]

    def _refresh_recent_menu(self) -> None:
        self.recent_menu.clear()
        recent = self._recent()
        for path in recent:
            action = self.recent_menu.addAction(Path(path).name)
            action.setToolTip(path)
            action.setStatusTip(path)
            action.triggered.connect(lambda _checked=False, p=path: self.confirm_replace(
                f"open {Path(p).name}", lambda: self.open_session(p)))
        self.recent_menu.setEnabled(bool(recent))

    # ------------------------------------------------------------------ export

    def export_all_dialog(self) -> None:
        from ioi_desktop.gui.widgets.export import ask_export_settings

        folder = QFileDialog.getExistingDirectory(self, "Export every figure and its data to a folder")
        if not folder:
            return
        chosen = ask_export_settings(self)
        if chosen is not None:
            self.start_export(folder, dpi=chosen[0], markers=chosen[1])

    def export_all(self, folder: str | Path, dpi: int = 300, markers: bool = False) -> list[Path]:
        """Every grid of every analysis (SVG, PNG at ``dpi``), each panel's other plots and data (CSV),
        plus the results files; known head roles drawn only with ``markers``. Written here and now
        (the command line and scripts); File > Export uses :meth:`start_export`, which does not block."""
        from ioi_desktop.gui.panels.result_panel import run_export_steps

        folder = Path(folder)
        try:
            written = run_export_steps(self._export_steps(folder, dpi, markers))
        except IOIError as error:
            self._report("Export failed", error)
            return []
        except OSError as error:
            self.show_message("Export failed", f"Could not write to {folder}: {error.strerror or error}.",
                              "Choose a folder you can write to.")
            return []
        self.step_label.setText(f"Exported {len(written)} files to {folder}")
        return written

    def start_export(self, folder: str | Path, dpi: int = 300, markers: bool = False) -> bool:
        """The files of :meth:`export_all`, written without blocking the GUI thread: one small piece of
        GUI work per event-loop turn, rasterising and writing in the worker's input thread
        (``gui.export_run``); ``export_finished(paths)`` or ``export_failed(message)`` follows.
        False when an export is already under way."""
        from ioi_desktop.gui.export_run import ExportRun

        if self._export_run is not None and not self._export_run.finished:
            self.step_label.setText("An export is under way; wait for it to finish.")
            return False
        folder = Path(folder)

        def done(written: list[Path]) -> None:
            self._export_run = None
            self.step_label.setText(f"Exported {len(written)} files to {folder}")
            self.export_finished.emit(written)

        def failed(message: str, hint: str) -> None:
            self._export_run = None
            self.step_label.setText(f"Export failed: {message}")
            self.show_message("Export failed", message, hint)
            self.export_failed.emit(message)

        self._export_run = ExportRun(self.worker, self._export_steps(folder, dpi, markers), done, failed)
        self.step_label.setText(f"Exporting to {folder}…")
        self._export_run.start()
        return True

    def _export_steps(self, folder: Path, dpi: int, markers: bool):
        """Every panel's export steps (``ResultPanel.export_steps``), then the results files."""
        from ioi_desktop.core.results import save_results

        for panel in self.panels:
            target = folder / _slug(panel.TITLE)
            target.mkdir(parents=True, exist_ok=True)
            yield from panel.export_steps(target, dpi=dpi, markers=markers)
        results = self.results
        if results is not None:
            def write_results() -> list[Path]:
                json_path = save_results(results, folder / "results")
                return [json_path, json_path.with_name("results.npz")]

            yield write_results

    # ------------------------------------------------------------------ about, layout, settings

    def about_text(self) -> str:
        from importlib.metadata import PackageNotFoundError, version

        from PySide6 import __version__ as pyside_version
        from PySide6.QtCore import qVersion

        def installed(package: str) -> str:
            try:
                return version(package)
            except PackageNotFoundError:
                return "not installed"

        model = self.handle.info.summary() if self.handle is not None else "no model loaded"
        return (
            f"<h3>{APP_NAME} {__version__}</h3>"
            "<p>Point-and-click circuit analysis of language models on the Indirect Object "
            "Identification task, offline.</p>"
            f"<p>PyTorch {installed('torch')}<br>TransformerLens {installed('transformer-lens')}<br>"
            f"Transformers {installed('transformers')}<br>Qt {qVersion()} (PySide6 {pyside_version})<br>"
            f"pyqtgraph {installed('pyqtgraph')}</p><p>Model: {model}</p>"
        )

    def show_about(self) -> None:
        box = QMessageBox(QMessageBox.Information, f"About {APP_NAME}", self.about_text(), QMessageBox.Ok, self)
        box.setTextFormat(Qt.RichText)
        box.open()
        self.about_box = box

    def show_help(self, topic: str = "guide") -> Any:
        """Help > Guide / Glossary / Model card: offline pages in one browser dialog."""
        from ioi_desktop.gui.dialogs.help import HelpDialog

        if self.help_dialog is None:
            self.help_dialog = HelpDialog(self)
        self.help_dialog.show_topic(topic)
        self.help_dialog.show()
        self.help_dialog.raise_()
        return self.help_dialog

    def reset_layout(self) -> None:
        self.restoreState(self._default_state, _LAYOUT_VERSION)
        for dock in self.docks.values():
            dock.show()
        for extent, size in zip(self._dock_extents, (INPUT_WIDTH, ATTENTION_HEIGHT)):
            extent.reset(size)

    def _restore_settings(self) -> None:
        from ioi_desktop.core.models import ModelSpec
        from ioi_desktop.gui.dialogs.analysis_options import load_settings

        run_settings = load_settings(self.settings)
        if run_settings is None:
            # Written by the version before typed options: analyses and the dialog's flat options.
            old = self.settings.value("run/options")
            try:
                options = json.loads(old) if isinstance(old, str) else {}
            except ValueError:
                options = {}
            analyses = self.settings.value("run/analyses")
            run_settings = {"options": options, **({"analyses": analyses} if isinstance(analyses, list) else {})}
        self.workbench.apply_settings(run_settings)
        for name, action in self.analysis_actions.items():
            action.setChecked(name in self.workbench.analyses)
        self._restore_geometry()
        spec_text = self.settings.value("model/spec")
        if isinstance(spec_text, str):
            try:
                self.model_picker.set_spec(ModelSpec.from_dict(json.loads(spec_text)))
            except (ValueError, TypeError, AttributeError):
                self.settings.remove("model/spec")

    def _restore_geometry(self) -> None:
        """Back where it was, exactly. ``restoreGeometry`` handles maximised windows and vanished
        screens, but it also moves a window that did not fit the screen (down by a title bar's
        height, narrower); the saved normal rectangle then puts it back as it was."""
        from PySide6.QtCore import QRect
        from PySide6.QtGui import QGuiApplication

        geometry = self.settings.value("window/geometry")
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        rect = self.settings.value("window/rect")
        try:
            x, y, width, height = (int(v) for v in rect) if isinstance(rect, (list, tuple)) else ()
        except (TypeError, ValueError):
            return
        saved = QRect(x, y, width, height)
        on_screen = any(screen.availableGeometry().intersects(saved) for screen in QGuiApplication.screens())
        if on_screen and width > 0 and height > 0 and not (self.windowState() & (Qt.WindowMaximized | Qt.WindowFullScreen)):
            self.setGeometry(saved)

    def save_settings(self) -> None:
        self.settings.setValue("window/geometry", self.saveGeometry())
        normal = self.normalGeometry() if self.isMaximized() or self.isFullScreen() else self.geometry()
        self.settings.setValue("window/rect", [normal.x(), normal.y(), normal.width(), normal.height()])
        if self.panels:  # a window closed before its panels existed has no full layout to remember
            self.settings.setValue("window/state", self.saveState(_LAYOUT_VERSION))
        from ioi_desktop.gui.dialogs.analysis_options import save_settings

        save_settings(self.settings, self.run_settings())
        self.settings.sync()

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt override
        """Ask about unsaved work when the user closes the window; save settings; stop the worker."""
        if event.spontaneous() and not self._quit_confirmed and self.has_unsaved_work:
            event.ignore()
            self.request_quit()
            return
        if self.confirm_box is not None:
            self.confirm_box.close()
        self.save_settings()
        if self.worker.busy:
            self.step_label.setText("Stopping the current job…")
        self.worker.shutdown()
        if self.message_box is not None:
            self.message_box.close()
        super().closeEvent(event)

