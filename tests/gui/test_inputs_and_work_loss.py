"""Issue 17, findings 2, 4, 11 and 13 and Help: the real window, its worker threads and the tiny model.

- 2: building, validating and reading session files run off the GUI thread; the
  prompt table is a model/view table; Run is disabled (not queued) while a set is checked.
- 4: prompts wrap, the differing tokens are highlighted in both cells, the detail pane edits the pair.
- 11: undo/redo in an Edit menu, "discard unsaved changes?" on replace and on quit, sessions
  restoring the view (patching grid and mode, current tab, pinned heads, selection).
- 13: the custom-template hint, one full stop in build errors, the pair builder's remembered
  settings, a failed folder leaving the model list, Patching opening on resid_pre, exact geometry.
- Help: guide, glossary and model card, offline.
"""

from __future__ import annotations

import threading

import pytest
from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QDialogButtonBox, QHeaderView, QMessageBox, QTableView, QTableWidget

from tests.support.gui_helpers import open_session_and_wait, run_and_wait, save_screenshot, save_session_and_wait

DEMO_NAMES = "John\nMary\nTom\nJames\nDan\nSid"
TEMPLATE = "When [B] and [A] went to the [PLACE], [B] gave a [OBJECT] to [A]"


def fill_builder(dialog, n: int, template: str = TEMPLATE) -> None:
    """Words the tiny model's tokenizer knows, and one custom template."""
    dialog.family_combo.setCurrentIndex(dialog.family_combo.findData("custom"))
    dialog.corruption_combo.setCurrentIndex(dialog.corruption_combo.findData("s2-io"))
    dialog.word_edits["names"].setPlainText(DEMO_NAMES)
    dialog.word_edits["places"].setPlainText("shops\npark")
    dialog.word_edits["objects"].setPlainText("bag\nball")
    dialog.templates_edit.setPlainText(template)
    dialog.n_spin.setValue(n)


def click(box: QMessageBox, label: str) -> None:
    button = next(b for b in box.buttons() if b.text() == label)
    button.click()


@pytest.fixture
def ran_window(qtbot, loaded_window):
    run_and_wait(qtbot, loaded_window)
    return loaded_window


# ---------------------------------------------------------------- finding 2


def test_a_thousand_built_pairs_are_built_checked_and_shown_off_the_gui_thread(qtbot, loaded_window, monkeypatch):
    import ioi_desktop.gui.dialogs.pair_builder as builder_module
    import ioi_desktop.gui.panels.prompt_editor as editor_module

    window = loaded_window
    threads: dict[str, list[bool]] = {"build": [], "validate": []}
    real_build, real_validate = builder_module.build_pairs, editor_module.validate

    def build(*args, **kwargs):
        threads["build"].append(threading.current_thread() is threading.main_thread())
        return real_build(*args, **kwargs)

    def validate(*args, **kwargs):
        threads["validate"].append(threading.current_thread() is threading.main_thread())
        return real_validate(*args, **kwargs)

    monkeypatch.setattr(builder_module, "build_pairs", build)
    monkeypatch.setattr(editor_module, "validate", validate)
    window.open_pair_builder()
    dialog = window.pair_builder
    fill_builder(dialog, 1000)
    ok = dialog.buttons.button(QDialogButtonBox.Ok)
    assert not ok.isEnabled()  # the settings changed: nothing to use until they are built
    qtbot.waitUntil(lambda: not dialog.building and ok.isEnabled(), timeout=30_000)
    ok.click()

    editor = window.prompt_editor
    assert isinstance(editor.table, QTableView) and not isinstance(editor.table, QTableWidget)
    assert editor.table.model().rowCount() == 1000
    # The set is being checked in the worker: Run is disabled (a click does nothing, nothing queues).
    assert editor.checking and not window.actions_by_name["run"].isEnabled()
    window.actions_by_name["run"].trigger()
    assert not window.worker.busy
    qtbot.waitUntil(lambda: not editor.checking, timeout=30_000)
    assert editor.valid, editor.invalid_reason
    assert window.actions_by_name["run"].isEnabled()
    assert threads["build"] and not any(threads["build"])
    assert threads["validate"] and not any(threads["validate"])


def test_session_files_are_read_and_written_off_the_gui_thread(qtbot, ran_window, tmp_path, monkeypatch):
    import ioi_desktop.core.session as session_module

    on_main: list[bool] = []
    real_save, real_load = session_module.save_session, session_module.load_session

    def save(*args, **kwargs):
        on_main.append(threading.current_thread() is threading.main_thread())
        return real_save(*args, **kwargs)

    def load(*args, **kwargs):
        on_main.append(threading.current_thread() is threading.main_thread())
        return real_load(*args, **kwargs)

    monkeypatch.setattr(session_module, "save_session", save)
    monkeypatch.setattr(session_module, "load_session", load)
    path = tmp_path / "threads.ioisession"
    assert save_session_and_wait(qtbot, ran_window, path)
    assert open_session_and_wait(qtbot, ran_window, path)
    assert on_main == [False, False]


# ---------------------------------------------------------------- finding 4


def diff_pixels(widget) -> int:
    image = widget.grab().toImage()
    target = QColor("#ffd54f")
    count = 0
    for x in range(0, image.width(), 2):
        for y in range(0, image.height(), 2):
            colour = image.pixelColor(x, y)
            if abs(colour.red() - target.red()) + abs(colour.green() - target.green()) + abs(colour.blue() - target.blue()) < 12:
                count += 1
    return count


def test_prompt_cells_wrap_and_highlight_the_tokens_that_differ(qtbot, loaded_window):
    from ioi_desktop.gui.panels.prompt_editor import DIFF_ROLE

    editor = loaded_window.prompt_editor
    model = editor.table.model()
    pair = editor.prompt_set()[0]
    clean_spans = model.index(0, 0).data(DIFF_ROLE)
    corrupt_spans = model.index(0, 1).data(DIFF_ROLE)
    # The notebook's corruption swaps the names: S2 differs (and the answers' names, nowhere else).
    assert [pair.clean[a:b] for a, b in clean_spans] == [pair.incorrect.strip()]
    assert [pair.corrupt[a:b] for a, b in corrupt_spans] == [pair.correct.strip()]
    dock = loaded_window.docks[editor.TITLE]
    dock.show()
    qtbot.waitUntil(lambda: editor.table.isVisible(), timeout=5000)
    editor.table.viewport().update()
    assert diff_pixels(editor.table.viewport()) > 20  # the highlight is painted in both prompt columns
    # The full text wraps: a narrow column gets rows of several lines, not an elided line.
    width = editor.table.fontMetrics().horizontalAdvance(pair.clean)
    editor.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
    editor.table.setColumnWidth(0, width // 3)
    qtbot.waitUntil(lambda: editor.table.rowHeight(0) >= 3 * editor.table.fontMetrics().lineSpacing(), timeout=5000)
    save_screenshot(editor, "prompt_editor_wrapped")


def test_the_detail_pane_edits_the_selected_pair_in_full(qtbot, loaded_window):
    editor = loaded_window.prompt_editor
    editor.select_row(2)
    assert editor.clean_edit.toPlainText() == editor.prompt_set()[2].clean
    edited = editor.prompt_set()[2].clean.replace("shops", "park")
    editor.clean_edit.setPlainText(edited)
    editor.commit_detail()
    assert editor.prompt_set()[2].clean == edited
    assert editor.table.model().index(2, 0).data() == edited
    qtbot.waitUntil(lambda: editor.valid and not editor.checking, timeout=5000)
    assert editor.clean_strip.tokens()  # the token strips stay


# ---------------------------------------------------------------- finding 11


def test_edits_undo_and_redo_from_the_edit_menu(qtbot, loaded_window):
    window = loaded_window
    editor = window.prompt_editor
    menus = {action.text().replace("&", ""): action.menu() for action in window.menuBar().actions()}
    edit_texts = [a.text().replace("&", "") for a in menus["Edit"].actions() if a.text()]
    assert edit_texts[:2] == ["Undo", "Redo"]
    original = editor.prompt_set()
    editor.edit_pair(1, "correct", " Tom")
    editor.select_row(0)
    editor.add_pair()
    editor.remove_pair()
    editor.remove_pair()
    assert len(editor.prompt_set()) == 7 and editor.has_unsaved_edits
    for _ in range(4):
        window.actions_by_name["undo"].trigger()
    assert editor.prompt_set() == original and not editor.has_unsaved_edits
    window.actions_by_name["redo"].trigger()
    assert editor.prompt_set()[1].correct == " Tom"


def test_replacing_an_edited_set_asks_first(qtbot, loaded_window):
    window = loaded_window
    editor = window.prompt_editor
    editor.edit_pair(0, "clean", editor.prompt_set()[0].clean.replace("shops", "park"))
    edited = editor.prompt_set()
    window.actions_by_name["notebook_set"].trigger()
    box = window.confirm_box
    assert box is not None and box.isVisible() and "unsaved changes" in box.text()
    save_screenshot(box, "confirm_replace")
    click(box, "Cancel")
    assert editor.prompt_set() == edited
    window.actions_by_name["notebook_set"].trigger()
    click(window.confirm_box, "Replace")
    assert editor.prompt_set() != edited
    window.actions_by_name["undo"].trigger()
    assert editor.prompt_set() == edited


def test_quit_offers_to_save_a_new_set_and_its_results(qtbot, ran_window, tmp_path):
    window = ran_window
    window.actions_by_name["quit"].trigger()
    box = window.confirm_box
    assert box is not None and box.isVisible() and "results are not saved" in box.text()
    click(box, "Cancel")
    assert window.isVisible()
    window.workbench.session_path = tmp_path / "kept.ioisession"  # Save writes here without a file dialog
    window.actions_by_name["quit"].trigger()
    with qtbot.waitSignal(window.session_saved, timeout=60_000):
        click(window.confirm_box, "Save…")
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=5000)
    assert (tmp_path / "kept.ioisession").is_file()


def test_quit_discard_closes_without_saving(qtbot, ran_window):
    window = ran_window
    window.actions_by_name["quit"].trigger()
    click(window.confirm_box, "Discard")
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=5000)


def test_a_reopened_session_restores_the_whole_view(qtbot, ran_window, tmp_path, settings):
    from ioi_desktop.gui.main_window import MainWindow

    window = ran_window
    panels = {panel.TITLE: panel for panel in window.panels}
    patching = panels["Patching"]
    window.docks["Patching"].raise_()
    patching.ensure_drawn()
    patching.grid_combo.setCurrentIndex(patching.grid_combo.findData("head_z"))
    patching.mode_combo.setCurrentIndex(1)
    window.docks["Ablation"].raise_()
    window.selection.set_pinned([(1, 3)])
    window.selection.select_prompt(3)
    window.selection.select_head(1, 2)
    path = tmp_path / "view.ioisession"
    assert save_session_and_wait(qtbot, window, path)

    other = MainWindow(settings=settings)
    qtbot.addWidget(other)
    other.show()
    assert open_session_and_wait(qtbot, other, path)
    other_patching = next(p for p in other.panels if p.TITLE == "Patching")
    other_patching.ensure_drawn()
    assert other_patching.grid_combo.currentData() == "head_z"
    assert other_patching.mode_combo.currentIndex() == 1
    assert "Ablation" in other.view_state()["current_tabs"]
    assert other.selection.pinned == ((1, 3),)
    assert (other.selection.prompt, other.selection.layer, other.selection.head) == (3, 1, 2)
    assert other.prompt_editor.current_row() == 3
    other.close()


# ---------------------------------------------------------------- finding 13


def test_pair_builder_hint_one_full_stop_and_remembered_settings(qtbot, loaded_window):
    window = loaded_window
    window.open_pair_builder()
    dialog = window.pair_builder
    qtbot.waitUntil(lambda: not dialog.building, timeout=10_000)
    dialog.family_combo.setCurrentIndex(dialog.family_combo.findData("BABA"))
    dialog.rebuild()
    assert not dialog.templates_edit.isEnabled()
    dialog.word_tabs.setCurrentIndex(dialog.word_tabs.count() - 1)  # the greyed box says why
    assert "custom" in dialog.templates_hint.text() and dialog.templates_hint.isVisibleTo(dialog)
    # A template with a word the model does not know: the error quotes it once, with one full stop.
    fill_builder(dialog, 5, TEMPLATE.replace("went", "walked"))
    dialog.rebuild()
    qtbot.waitUntil(lambda: not dialog.building, timeout=10_000)
    message = dialog.counts_label.text()
    assert "'walked'" in message and "'walked'.." not in message and ".." not in message
    fill_builder(dialog, 7)
    dialog.seed_spin.setValue(3)
    qtbot.waitUntil(lambda: not dialog.building and dialog.prompt_set() is not None, timeout=10_000)
    dialog.buttons.button(QDialogButtonBox.Ok).click()
    window.open_pair_builder()
    again = window.pair_builder
    assert again is not dialog
    assert (again.family_combo.currentData(), again.n_spin.value(), again.seed_spin.value()) == ("custom", 7, 3)
    assert again.corruption_combo.currentData() == "s2-io"
    assert again.word_edits["names"].toPlainText() == DEMO_NAMES
    assert again.templates_edit.toPlainText() == TEMPLATE
    again.reject()


def test_a_folder_that_fails_to_load_leaves_the_model_list(qtbot, window, tmp_path):
    from ioi_desktop.core.models import ModelSpec

    folder = str(tmp_path / "no-such-model")
    with qtbot.waitSignal(window.worker.model_load_failed, timeout=120_000):
        window.load_model(ModelSpec(source=folder))
    combo = window.model_picker.source_combo
    assert combo.findData(folder) < 0
    assert combo.currentData() != folder
    assert "does not exist" in window.model_picker.error_label.text()


def test_patching_opens_on_the_notebooks_first_grid(qtbot, ran_window):
    patching = next(p for p in ran_window.panels if p.TITLE == "Patching")
    ran_window.docks["Patching"].raise_()
    patching.ensure_drawn()
    assert patching.grid_combo.currentData() == "resid_pre"


def test_the_window_reopens_exactly_where_it_was(qtbot, tmp_path):
    from ioi_desktop.gui.main_window import MainWindow

    settings = QSettings(str(tmp_path / "geometry.ini"), QSettings.IniFormat)
    first = MainWindow(settings=settings, build_panels=False)
    qtbot.addWidget(first)
    first.show()
    # Bigger than the offscreen screen, as the default window is on a small laptop screen.
    first.setGeometry(100, 120, 1200, 900)
    saved = first.geometry()
    first.close()
    second = MainWindow(settings=settings, build_panels=False)
    qtbot.addWidget(second)
    second.show()
    assert second.geometry() == saved
    second.close()


# ---------------------------------------------------------------- Help


def test_help_has_a_guide_a_glossary_and_the_model_card_offline(qtbot, window):
    from ioi_desktop.gui.dialogs.help import TOPICS, topic_path

    assert all(topic_path(topic).is_file() for topic in TOPICS)
    menus = {action.text().replace("&", ""): action.menu() for action in window.menuBar().actions()}
    help_texts = [a.text().replace("&", "") for a in menus["Help"].actions()]
    assert {"IOI Desktop guide", "Glossary", "Bundled model card (ioi-mini)"} <= set(help_texts)
    window.actions_by_name["help_guide"].trigger()
    dialog = window.help_dialog
    assert dialog.isVisible()
    guide = dialog.text()
    for panel in ("Overview", "Logit lens", "Attribution", "Attention", "Patching", "Ablation", "Path patching",
                  "Head scores"):
        assert panel in guide
    assert "notebook" in guide
    save_screenshot(dialog, "help_guide")
    window.actions_by_name["help_glossary"].trigger()
    glossary = dialog.text()
    for word in ("IO (indirect object)", "S1", "S2", "END", "Logit difference", "Patching score"):
        assert word in glossary
    window.actions_by_name["help_model_card"].trigger()
    assert "ioi-mini" in dialog.text() and "Training" in dialog.text()
    dialog.close()


def test_each_prompt_row_is_as_tall_as_its_own_prompts(qtbot, loaded_window):
    # Rows used to be all as tall as the longest prompt; now each fits its own, measured when on screen.
    from dataclasses import replace as with_

    editor = loaded_window.prompt_editor
    prompt_set = editor.prompt_set()
    long_text = prompt_set[1].clean + " They had walked for a long time through the old town." * 4
    pairs = list(prompt_set.pairs)
    pairs[1] = with_(pairs[1], clean=long_text)
    editor.set_prompt_set(with_(prompt_set, pairs=tuple(pairs)), undoable=False)
    dock = loaded_window.docks[editor.TITLE]
    dock.show()
    qtbot.waitUntil(editor.table.isVisible, timeout=5000)
    table = editor.table
    line = table.fontMetrics().lineSpacing()
    qtbot.waitUntil(lambda: table.rowHeight(1) > table.rowHeight(0) + line, timeout=5000)
    assert table.rowHeight(0) == editor.row_fits(0) and table.rowHeight(1) == editor.row_fits(1)
    assert table.rowHeight(2) < table.rowHeight(1)
