"""Run > Options…: the dialog generated from the Options types, what reaches the runner, QSettings, sessions."""

from __future__ import annotations

from PySide6.QtWidgets import QCheckBox, QComboBox, QDialogButtonBox, QLineEdit, QSpinBox

from ioi_desktop.core.analyses import ANALYSES, option_types
from ioi_desktop.core.analyses.patching import SWEEPS
from ioi_desktop.core.workbench import Workbench
from ioi_desktop.gui.dialogs.analysis_options import AnalysisOptionsDialog, load_settings, save_settings

from tests.support.gui_helpers import RUN_TIMEOUT_MS, open_session_and_wait, save_session_and_wait

ALL_ANALYSES = [info.name for info in ANALYSES]


def test_dialog_has_a_widget_for_every_option_of_every_type_with_its_default(qtbot):
    dialog = AnalysisOptionsDialog(Workbench().settings())
    qtbot.addWidget(dialog)
    for name, cls in option_types().items():
        for spec in cls.specs():
            editor = dialog.editors[name][spec.name]
            assert editor.value() == (list(spec.default) if isinstance(spec.default, tuple) else spec.default)
            assert spec.help in editor.widget.toolTip()
            widget_type = {"int": QSpinBox, "choice": QComboBox, "bool": QCheckBox, "text": QLineEdit}.get(spec.kind)
            if widget_type is not None:
                assert isinstance(editor.widget, widget_type)
            if spec.kind == "int":
                assert (editor.widget.minimum(), editor.widget.maximum()) == (spec.low, spec.high)
    # Analyses without options get no group; the sweep check boxes carry core's titles.
    assert "dla" not in dialog.groups and "attention" not in dialog.groups
    assert dialog.editors["patching"]["sweeps"].checks["head_z"].text() == SWEEPS["head_z"].title
    assert dialog.settings() == Workbench().settings()


def test_dialog_edits_options_and_blocks_ok_without_a_sweep(qtbot):
    dialog = AnalysisOptionsDialog(Workbench().settings())
    qtbot.addWidget(dialog)
    ok = dialog.buttons.button(QDialogButtonBox.StandardButton.Ok)
    sweeps = dialog.editors["patching"]["sweeps"]
    for name, check in sweeps.checks.items():
        check.setChecked(name == "head_pattern")
    dialog.batch_spin.setValue(8)
    dialog.editors["logit_lens"]["top_k"].widget.setValue(12)
    dialog.editors["head_scores"]["seed"].widget.setValue(42)
    dialog.editors["patching"]["engine"].widget.setCurrentText("bridge")
    dialog.editors["ablation"]["heads"].widget.setText(" 1.2,0.3 ")
    dialog.analysis_checks["dla"].setChecked(False)
    chosen = dialog.settings()
    assert chosen["analyses"] == [name for name in ALL_ANALYSES if name != "dla"]
    assert chosen["batch_size"] == 8
    assert chosen["options"]["patching"] == {"sweeps": ["head_pattern"], "engine": "bridge"}
    assert chosen["options"]["logit_lens"] == {"top_k": 12, "lens_norm": "cached_final"}
    assert chosen["options"]["ablation"]["heads"] == "1.2,0.3"
    assert chosen["options"]["head_scores"]["seed"] == 42
    assert ok.isEnabled()
    # What the dialog returns is what the workbench accepts as typed Options.
    bench = Workbench()
    bench.apply_settings(chosen)
    assert bench.options["patching"].sweeps == ("head_pattern",) and bench.options["patching"].engine == "bridge"
    assert bench.options["ablation"].heads == "1.2,0.3"

    sweeps.checks["head_pattern"].setChecked(False)
    assert not ok.isEnabled() and "Activation patching's sweeps" in dialog.problem.text()
    # Without patching its grids do not matter (and its group is disabled).
    dialog.analysis_checks["patching"].setChecked(False)
    assert ok.isEnabled() and not dialog.groups["patching"].isEnabled()
    for check in dialog.analysis_checks.values():
        check.setChecked(False)
    assert not ok.isEnabled() and "at least one analysis" in dialog.problem.text()

    dialog.buttons.button(QDialogButtonBox.StandardButton.RestoreDefaults).click()
    assert dialog.settings() == Workbench().settings()
    assert dialog.batch_spin.text() == "Automatic"


def test_settings_are_remembered_in_qsettings(settings):
    assert load_settings(settings) is None
    chosen = Workbench().settings()
    chosen["options"]["patching"]["sweeps"] = ["mlp_out"]
    save_settings(settings, chosen)
    assert load_settings(settings) == chosen
    settings.setValue("run/settings", "{not json")
    assert load_settings(settings) is None


def test_window_applies_remembers_and_saves_the_options(qtbot, window, settings, tmp_path):
    action = window.actions_by_name["run_options"]
    run_menu = next(menu_action.menu() for menu_action in window.menuBar().actions() if menu_action.text() == "&Run")
    assert action in run_menu.actions()
    action.trigger()
    dialog = window.options_dialog
    assert dialog is not None and dialog.isVisible()
    dialog.analysis_checks["head_scores"].setChecked(False)
    for name, check in dialog.editors["patching"]["sweeps"].checks.items():
        check.setChecked(name in ("head_z", "attn_out"))
    dialog.editors["logit_lens"]["top_k"].widget.setValue(4)
    dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()
    chosen = window.run_settings()
    assert chosen["options"]["patching"]["sweeps"] == ["attn_out", "head_z"]
    assert chosen["options"]["logit_lens"]["top_k"] == 4
    assert not window.analysis_actions["head_scores"].isChecked()
    assert load_settings(settings) == chosen
    assert window.current_session().settings == chosen

    # Sessions carry their options: opening one brings them back.
    path = tmp_path / "options.ioisession"
    assert save_session_and_wait(qtbot, window, path)
    window.apply_run_settings(Workbench().settings())
    assert window.run_settings() != chosen
    assert open_session_and_wait(qtbot, window, path)
    assert window.run_settings() == chosen


def test_a_run_uses_the_chosen_options(qtbot, loaded_window):
    window = loaded_window
    chosen = Workbench().settings()
    chosen["analyses"] = ["logit_lens", "patching"]
    chosen["options"]["patching"]["sweeps"] = ["head_z"]
    chosen["options"]["logit_lens"]["top_k"] = 3
    window.apply_run_settings(chosen)
    with qtbot.waitSignal(window.results_shown, timeout=RUN_TIMEOUT_MS) as shown:
        assert window.run()
    results = shown.args[0]
    assert results.has_array("patch_head_z")
    assert not results.has_array("patch_resid_pre") and not results.has_array("patch_head_v")
    assert results.array("logit_lens_grid_top_ids").shape[-1] == 3
    assert results.meta["options"]["patching"]["sweeps"] == ["head_z"]


def test_lens_norm_and_head_score_sequences_are_options_in_the_dialog(qtbot):
    """The logit-difference lens's LayerNorm choice and the head-score sequences are set like any option."""
    dialog = AnalysisOptionsDialog(Workbench().settings())
    qtbot.addWidget(dialog)
    lens_norm = dialog.editors["logit_lens"]["lens_norm"]
    assert lens_norm.value() == "cached_final" and "notebook" in lens_norm.widget.toolTip()
    lens_norm.widget.setCurrentText("recompute")
    dialog.editors["head_scores"]["prepend_bos"].widget.setCurrentText("no")
    dialog.editors["head_scores"]["token_pool"].widget.setCurrentText("id_range")
    chosen = dialog.settings()
    assert chosen["options"]["logit_lens"] == {"top_k": 5, "lens_norm": "recompute"}
    assert chosen["options"]["head_scores"]["prepend_bos"] == "no"
    assert chosen["options"]["head_scores"]["token_pool"] == "id_range"
    bench = Workbench()
    bench.apply_settings(chosen)
    assert bench.options["logit_lens"].lens_norm == "recompute"
