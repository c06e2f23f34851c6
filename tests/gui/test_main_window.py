"""The real window, the real worker thread and a real (tiny) model, end to end, offscreen.

Covers issue 6's "Done when" list for the app shell: load a model, build
pairs, run, cancel, rerun, click a head cell and see the attention viewer
follow, click a position, save and reopen a session, export, an invalid
prompt blocking Run, a worker error, closing during a run, plus startup
without torch and the remembered settings. Screenshots of the window and of
every result panel go to artifacts/screenshots/.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap

import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt, QTimer
from PySide6.QtWidgets import QDialogButtonBox

from ioi_desktop.core.analyses import analysis_names
from ioi_desktop.core.prompts import PromptPair, PromptSet
from ioi_desktop.core.session import load_session

from tests.support.gui_fixtures import load_through_worker
from tests.support.gui_helpers import RUN_TIMEOUT_MS, run_and_wait, save_screenshot, open_session_and_wait, save_session_and_wait


def dock_of(window, title, qtbot=None):
    """Raise a dock's tab, as a click on it does; its panel draws results that arrived while it was hidden."""
    dock = window.docks[title]
    dock.show()
    dock.raise_()
    panel = next((p for p in window.panels if p.TITLE == title), None)
    if panel is not None:
        if qtbot is not None:
            qtbot.waitUntil(panel.on_screen, timeout=5000)
        panel.ensure_drawn()
    return dock


def click_cell(qtbot, heatmap, row, col):
    """A real left click on the centre of a heatmap cell."""
    scene = heatmap.plot.vb.mapViewToScene(QPointF(col, row))
    point = heatmap.mapFromScene(scene)
    qtbot.mouseClick(heatmap.viewport(), Qt.LeftButton, pos=point)


@pytest.fixture
def ran_window(qtbot, loaded_window):
    run_and_wait(qtbot, loaded_window)
    return loaded_window


def test_window_shows_before_torch_is_imported():
    code = textwrap.dedent(
        """
        import os, sys, time
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
        from ioi_desktop import launch  # what `ioi-desktop` imports first
        from PySide6.QtCore import QSettings
        from ioi_desktop.gui.app import create_application
        from ioi_desktop.gui.main_window import MainWindow
        app = create_application()
        window = MainWindow(settings=QSettings(sys.argv[1], QSettings.IniFormat), build_panels=False)
        window.open_notebook_set()
        window.show()
        app.processEvents()
        print(window.isVisible(), "torch" in sys.modules, "transformer_lens" in sys.modules)
        window.build_result_panels()
        print(len(window.panels) > 0, "torch" in sys.modules)
        window.close()
        """
    )
    with tempfile.TemporaryDirectory() as folder:
        out = subprocess.run([sys.executable, "-c", code, f"{folder}/s.ini"], capture_output=True, text=True,
                             timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "False", "False", "True", "False"]


def test_load_model_and_run_fills_every_panel(qtbot, window, tiny_model_dir):
    window.start(load_model=False)
    load_through_worker(qtbot, window, tiny_model_dir)
    qtbot.waitUntil(lambda: window.prompt_editor.valid, timeout=5000)
    # Loading also lists this machine's devices; absent GPU kinds stay listed but disabled.
    combo = window.model_picker.device_combo
    entries = {combo.itemData(i): combo.model().item(i).isEnabled() for i in range(combo.count())}
    assert entries["auto"] and entries["cpu"]
    assert "cuda" in entries or any(name.startswith("cuda:") for name in entries)
    if "cuda" in entries:
        assert entries["cuda"] is False and "no NVIDIA GPU" in combo.itemText(combo.findData("cuda"))
    assert window.selected_analyses() == analysis_names()
    save_screenshot(window, "window_model_loaded")
    results = run_and_wait(qtbot, window)
    assert results.analyses == analysis_names()
    assert window.panel_errors == []
    assert "Run finished" in window.step_label.text()
    for panel in window.panels:
        assert panel.results is not None, panel.TITLE
        dock_of(window, panel.TITLE)
        qtbot.wait(50)  # one paint
        problem = getattr(results.get("circuit"), "problem", None) if "circuit" in panel.analyses() else None
        if problem:  # the random model has no clean-corrupt gap: the Circuit panel says so and draws nothing
            assert problem in panel.status.text()
            continue
        save_screenshot(panel, f"panel_{panel.objectName()}")
    save_screenshot(window, "window_after_run")


def test_gui_thread_stays_responsive_during_a_run(qtbot, loaded_window, monkeypatch):
    """While an analysis computes in the worker thread, the GUI thread keeps handling its events.

    The analysis waits (in the worker thread) until a timer on the GUI thread has fired:
    a GUI thread blocked by the run never fires it, and the wait gives up. How long the
    GUI thread goes without a tick during a run is measured by benchmarks/bench_gui.py
    (a test asserts no durations).
    """
    import threading

    import ioi_desktop.core.analyses.dla as dla

    window = loaded_window  # fresh: nothing is cached, so the analysis really runs
    ticked = threading.Event()
    seen = []
    real_run = dla.run

    def run_once_the_gui_ticked(ctx, options, progress):
        ticked.clear()
        seen.append((threading.current_thread() is threading.main_thread(), ticked.wait(timeout=60)))
        return real_run(ctx, options, progress)

    monkeypatch.setattr(dla, "run", run_once_the_gui_ticked)
    timer = QTimer()
    timer.setInterval(20)
    timer.timeout.connect(ticked.set)
    timer.start()
    results = run_and_wait(qtbot, window)
    timer.stop()
    assert "dla" in results.analyses
    assert seen == [(False, True)], "the GUI thread did not handle its timer while the worker computed"


def test_second_run_is_refused_while_one_runs(qtbot, loaded_window):
    window = loaded_window
    refused = []
    window.worker.job_refused.connect(refused.append)
    assert window.run()
    assert not window.actions_by_name["run"].isEnabled()
    assert not window.worker.run_analyses(window.handle, window.prompt_editor.prompt_set(),
                                          window.workbench.run_request())
    qtbot.waitUntil(lambda: not window.worker.busy, timeout=RUN_TIMEOUT_MS)
    assert refused and "run is in progress" in refused[0]


def test_cancel_then_rerun(qtbot, loaded_window):
    window = loaded_window

    def press_cancel(*args):
        window.actions_by_name["cancel"].trigger()

    # Cancel as soon as the run has started: a run of the tiny model can finish before
    # its first (throttled) progress report, so a report is no reliable moment to cancel.
    # Cancelling inside each analysis is tests/robustness/test_gui_recovery.py's.
    window.worker.job_started.connect(press_cancel)
    with qtbot.waitSignal(window.worker.run_cancelled, timeout=RUN_TIMEOUT_MS):
        assert window.run()
    # Whatever finished before the cancel took effect is kept; the run as a whole did not finish.
    assert window.results is None or set(window.results.analyses) < set(analysis_names())
    assert "cancelled" in window.step_label.text()
    window.worker.job_started.disconnect(press_cancel)
    results = run_and_wait(qtbot, window)
    assert results.analyses == analysis_names()


def test_clicking_a_head_cell_shows_that_head_in_the_attention_viewer(qtbot, ran_window):
    window = ran_window
    patching = next(p for p in window.panels if p.TITLE == "Patching")
    attention = next(p for p in window.panels if "attention" in p.analyses())
    dock_of(window, patching.TITLE, qtbot)
    patching.grid_combo.setCurrentIndex(patching.grid_combo.findData("head_z"))
    qtbot.wait(50)
    n_layers, n_heads = window.handle.info.n_layers, window.handle.info.n_heads
    target = (n_layers - 1, n_heads - 1)
    assert attention.shown_head()[1:] != target
    click_cell(qtbot, patching.exact, *target)
    assert (window.selection.layer, window.selection.head) == target
    assert attention.shown_head()[1:] == target
    expected = window.results.array("attention_pattern")[0, target[0], target[1]]
    shown = attention.shown_pattern()
    np.testing.assert_array_equal(shown, expected[: shown.shape[0], : shown.shape[1]])
    assert patching.exact.selected() == target
    save_screenshot(window, "window_head_selected")


def test_clicking_a_position_cell_selects_layer_and_position(qtbot, ran_window):
    window = ran_window
    lens = next(p for p in window.panels if p.TITLE == "Logit lens")
    dock_of(window, lens.TITLE)
    qtbot.wait(50)
    click_cell(qtbot, lens.grid, 1, 4)
    assert (window.selection.layer, window.selection.position) == (1, 4)
    attention = next(p for p in window.panels if "attention" in p.analyses())
    assert attention.query_position() == 4
    # Choosing another prompt in the editor changes the per-prompt views.
    window.prompt_editor.select_row(3)
    assert window.selection.prompt == 3
    assert attention.shown_head()[0] == 3


def test_session_save_and_reopen_restores_results_without_recomputing(qtbot, ran_window, tmp_path, settings):
    window = ran_window
    window.selection.select_head(1, 2)
    path = tmp_path / "study.ioisession"
    assert save_session_and_wait(qtbot, window, path)
    saved = window.results

    from ioi_desktop.gui.main_window import MainWindow
    from ioi_desktop.gui.worker import RUN

    other = MainWindow(settings=settings)
    qtbot.addWidget(other)
    jobs = []
    other.worker.job_started.connect(jobs.append)
    assert open_session_and_wait(qtbot, other, path)
    assert not other.read_only or other.handle is None
    for name, array in saved.iter_arrays():
        np.testing.assert_array_equal(other.results.array(name), array)
    assert (other.selection.layer, other.selection.head) == (1, 2)
    assert other.prompt_editor.prompt_set() == window.prompt_editor.prompt_set()
    assert all(panel.results is not None for panel in other.panels)
    assert RUN not in jobs  # the results came from the file, not from running the analyses again
    assert str(path) in [action.toolTip() for action in other.recent_menu.actions()]
    other.close()


def test_session_whose_model_is_missing_opens_read_only(qtbot, ran_window, tmp_path):
    window = ran_window
    path = tmp_path / "elsewhere.ioisession"
    assert save_session_and_wait(qtbot, window, path)
    session = load_session(path)
    from dataclasses import replace

    from ioi_desktop.core.session import save_session

    save_session(path, replace(session, model_spec={**session.model_spec, "source": str(tmp_path / "gone")}))
    assert open_session_and_wait(qtbot, window, path)
    assert window.read_only
    assert window.read_only_label.isVisible()
    assert "not on this machine" in window.read_only_label.toolTip()
    assert not window.actions_by_name["run"].isEnabled()
    assert "read-only" in window.actions_by_name["run"].toolTip()
    assert window.results is not None
    assert "not on this machine" in window.model_picker.error_label.text()
    save_screenshot(window, "window_read_only_session")


def test_export_all_writes_figures_and_data(qtbot, ran_window, tmp_path):
    written = ran_window.export_all(tmp_path / "export")
    suffixes = {path.suffix for path in written}
    assert {".png", ".svg", ".csv", ".json", ".npz"} <= suffixes
    assert all(path.is_file() and path.stat().st_size > 0 for path in written)
    assert "Exported" in ran_window.step_label.text()


def test_invalid_prompt_shows_its_finding_and_blocks_run(qtbot, loaded_window):
    window = loaded_window
    editor = window.prompt_editor
    model = editor.table.model()
    editor.edit_pair(2, "correct", " Zorblax")
    qtbot.waitUntil(lambda: not editor.valid and not editor.checking, timeout=5000)
    check = model.index(2, 4).data()
    assert check.startswith("✖")
    assert "Zorblax" in model.index(2, 2).data(Qt.ToolTipRole)
    assert not window.actions_by_name["run"].isEnabled()
    assert "Zorblax" in window.actions_by_name["run"].toolTip()
    assert not window.run()
    assert editor.findings_list.isVisible() and editor.findings_list.model().rowCount() >= 1
    save_screenshot(window, "window_invalid_prompt")
    editor.edit_pair(2, "correct", " Tom")
    qtbot.waitUntil(lambda: editor.valid, timeout=5000)
    assert window.actions_by_name["run"].isEnabled()


def test_editing_adding_removing_and_reordering_pairs(qtbot, loaded_window):
    editor = loaded_window.prompt_editor
    first = editor.prompt_set()[0]
    editor.select_row(0)
    editor.add_pair()
    assert len(editor.prompt_set()) == 9 and editor.prompt_set()[1] == first
    editor.move_pair(+1)
    assert editor.current_row() == 2 and editor.prompt_set()[2] == first
    editor.remove_pair()
    assert len(editor.prompt_set()) == 8
    assert editor.clean_strip.tokens()  # token strip of the selected pair
    qtbot.waitUntil(lambda: editor.valid, timeout=5000)


def test_an_analysis_that_fails_marks_its_panel_and_the_others_finish(qtbot, loaded_window, monkeypatch):
    import ioi_desktop.core.analyses.logit_diff as logit_diff

    window = loaded_window
    real_run = logit_diff.run

    def broken(ctx, options, progress):
        raise RuntimeError("simulated failure inside an analysis")

    monkeypatch.setattr(logit_diff, "run", broken)  # a fresh window: nothing is cached yet
    results = run_and_wait(qtbot, window)
    assert "logit_diff" not in results.analyses and len(results.analyses) > 0
    panel = next(p for p in window.panels if "logit_diff" in p.analyses())
    assert "simulated failure" in panel.failure_text
    assert window.docks[panel.TITLE].windowTitle().endswith("(did not run)")
    assert "did not run: logit_diff" in window.step_label.text()
    monkeypatch.setattr(logit_diff, "run", real_run)
    results = run_and_wait(qtbot, window)
    assert "logit_diff" in results.analyses and panel.failure_text == ""
    assert not window.docks[panel.TITLE].windowTitle().endswith("(did not run)")


def test_a_model_that_cannot_load_is_explained(qtbot, window, tmp_path):
    from ioi_desktop.core.models import ModelSpec

    with qtbot.waitSignal(window.worker.model_load_failed, timeout=120_000):
        window.load_model(ModelSpec(source=str(tmp_path / "no-such-model")))
    picker = window.model_picker
    assert picker.error_label.isVisible() and "does not exist" in picker.error_label.text()
    assert picker.load_button.isEnabled()
    save_screenshot(picker, "model_picker_error")


def test_closing_during_a_run_stops_the_worker(qtbot, loaded_window):
    window = loaded_window
    started = []
    window.worker.progress_changed.connect(lambda *args: started.append(1))
    assert window.run()
    qtbot.waitUntil(lambda: bool(started), timeout=RUN_TIMEOUT_MS)
    window.close()
    assert not window.worker.thread.isRunning()


def test_pair_builder_makes_a_set_for_the_editor(qtbot, loaded_window):
    window = loaded_window
    window.open_pair_builder()
    dialog = window.pair_builder
    assert dialog is not None and dialog.isVisible()
    dialog.family_combo.setCurrentIndex(dialog.family_combo.findData("custom"))
    dialog.corruption_combo.setCurrentIndex(dialog.corruption_combo.findData("s2-io"))
    dialog.word_edits["names"].setPlainText("John\nMary\nTom\nJames\nDan\nSid\nZorblax")
    dialog.word_edits["places"].setPlainText("shops\npark\nstore")
    dialog.word_edits["objects"].setPlainText("bag\nball\ndrink")
    dialog.templates_edit.setPlainText("When [B] and [A] went to the [PLACE], [B] gave a [OBJECT] to [A]")
    dialog.n_spin.setValue(6)
    dialog.rebuild()
    qtbot.waitUntil(lambda: not dialog.building, timeout=5000)
    assert dialog.report is not None, dialog.counts_label.text()
    assert len(dialog.report.prompt_set) == 6
    assert "1 rejected" in dialog.counts_label.text() and "Zorblax" in dialog.rejected_label.text()
    save_screenshot(dialog, "pair_builder")
    dialog.buttons.button(QDialogButtonBox.Ok).click()
    assert len(window.prompt_editor.prompt_set()) == 6
    assert window.prompt_editor.prompt_set()[0].meta.corruption == "s2-io"
    qtbot.waitUntil(lambda: window.prompt_editor.valid, timeout=5000)


def test_pairs_import_and_export(qtbot, loaded_window, tmp_path):
    window = loaded_window
    assert window.export_pairs(tmp_path / "pairs.csv")
    window.set_prompt_set(PromptSet((PromptPair("a", "b", " c", " d"),)))
    assert window.import_pairs(tmp_path / "pairs.csv")
    assert len(window.prompt_editor.prompt_set()) == 8
    assert not window.import_pairs(tmp_path / "missing.json")
    assert window.message_box is not None and "missing.json" in window.message_box.text()


def test_settings_are_remembered(qtbot, settings, loaded_window):
    from ioi_desktop.gui.main_window import MainWindow

    window = loaded_window
    window.analysis_actions["head_scores"].setChecked(False)
    window.docks["Model"].hide()
    window.close()
    again = MainWindow(settings=settings)
    qtbot.addWidget(again)
    again.show()
    # Geometry is stored (restoring it is clamped to the offscreen test screen, so not compared).
    assert settings.value("window/geometry") is not None
    assert "head_scores" not in again.selected_analyses()
    assert not again.docks["Model"].isVisible()
    assert again.model_picker.spec().source == window.handle.spec.source
    again.reset_layout()
    assert again.docks["Model"].isVisible()
    again.close()


def test_menus_shortcuts_and_about(qtbot, loaded_window):
    window = loaded_window
    shortcuts = {name: window.actions_by_name[name].shortcut().toString() for name in
                 ("run", "cancel", "open_session", "save_session", "export_all")}
    assert shortcuts == {"run": "Ctrl+R", "cancel": "Esc", "open_session": "Ctrl+O",
                         "save_session": "Ctrl+S", "export_all": "Ctrl+E"}
    in_menus = {a.objectName() for menu in window.menuBar().findChildren(type(window.menuBar().addMenu("x")))
                for a in menu.actions()}
    assert {f"action_{name}" for name in window.actions_by_name} <= in_menus
    text = window.about_text()
    for word in ("PyTorch", "TransformerLens", "Qt", "tiny-gpt2"):
        assert word in text


def test_smoke_mode_end_to_end(tmp_path):
    """``ioi-desktop --smoke-test --screenshot`` with the bundled model, as CI and the installer run it."""
    from ioi_desktop.core.paths import bundled_model_dir

    if not (bundled_model_dir() / "config.json").is_file():
        pytest.skip("the bundled model is not built yet (resources/models/ioi-mini)")
    shot = tmp_path / "smoke.png"
    out = subprocess.run(
        [sys.executable, "-m", "ioi_desktop.cli", "--smoke-test", "--screenshot", str(shot)],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    summary = out.stdout.strip().splitlines()[-1]
    assert summary.startswith("smoke test passed: model ioi-mini") and "mean logit diff" in summary
    assert "on the offscreen platform" in summary
    assert shot.is_file() and shot.stat().st_size > 10_000


def test_smoke_mode_reports_failure_with_a_reason(tmp_path):
    """With no bundled model the smoke test must fail loudly, not hang or pass."""
    resources = tmp_path / "resources"
    (resources / "data").mkdir(parents=True)
    out = subprocess.run(
        [sys.executable, "-m", "ioi_desktop.cli", "--smoke-test", "--timeout", "300"],
        capture_output=True, text=True, timeout=400,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen", "IOI_DESKTOP_RESOURCES": str(resources)},
    )
    assert out.returncode == 1
    assert "FAILED" in out.stderr and "bundled model is missing" in out.stderr
