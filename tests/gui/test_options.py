"""Run > Options…: the options dialog, what it hands the runner, QSettings and sessions."""

from __future__ import annotations

from gui_helpers import RUN_TIMEOUT_MS
from PySide6.QtWidgets import QDialogButtonBox

from ioi_desktop.core.analyses import ANALYSES
from ioi_desktop.core.analyses.patching import SWEEPS
from ioi_desktop.gui.dialogs.analysis_options import AnalysisOptionsDialog, RunOptions, load_options, save_options

ALL_ANALYSES = [info.name for info in ANALYSES]


def test_default_options_pass_nothing_but_the_sweeps_and_the_seed():
    options = RunOptions().runner_options(ALL_ANALYSES)
    assert set(options) == set(ALL_ANALYSES)
    assert options["patching"] == {"sweeps": list(SWEEPS)}
    assert options["attribution_patching"] == {"sweeps": list(SWEEPS)}
    assert options["head_scores"] == {"seed": 0}
    # Left at their defaults, top-k and the batch size are the analyses' own choice.
    assert options["logit_lens"] == {} and options["logit_diff"] == {} and options["dla"] == {}


def test_chosen_options_reach_the_analyses_that_take_them():
    chosen = RunOptions(sweeps=("head_z", "resid_pre"), batch_size=4, top_k=7, head_seed=3, head_seq_len=20)
    options = chosen.runner_options(["logit_lens", "patching", "head_scores", "attention"])
    assert options["patching"] == {"batch_size": 4, "sweeps": ["head_z", "resid_pre"]}
    assert options["logit_lens"] == {"batch_size": 4, "top_k": 7}
    assert options["head_scores"] == {"batch_size": 4, "seed": 3, "seq_len": 20}
    assert options["attention"] == {"batch_size": 4}
    assert "attribution_patching" not in options


def test_options_survive_a_round_trip_and_bad_values_fall_back_to_defaults():
    chosen = RunOptions(sweeps=("head_v",), batch_size=2, top_k=3, head_seed=9, head_seq_len=12,
                        analyses=("logit_diff", "patching"))
    assert RunOptions.from_dict(chosen.to_dict()) == chosen
    broken = RunOptions.from_dict({"sweeps": "head_z", "batch_size": 0, "top_k": True, "head_seed": -1,
                                   "head_seq_len": "long", "analyses": ["patching", "no such analysis"]})
    assert broken == RunOptions(analyses=("patching",))
    assert RunOptions.from_dict(None) == RunOptions()
    # Sweeps are kept in the core's order whatever order they were saved in.
    assert RunOptions.from_dict({"sweeps": ["head_q", "resid_pre"]}).sweeps == ("resid_pre", "head_q")


def test_options_are_remembered_in_qsettings(settings):
    assert load_options(settings) == RunOptions()
    chosen = RunOptions(sweeps=("mlp_out",), top_k=10)
    save_options(settings, chosen)
    assert load_options(settings) == chosen
    settings.setValue("run/options", "{not json")
    assert load_options(settings) == RunOptions()


def test_dialog_edits_every_option_and_blocks_ok_without_a_sweep(qtbot):
    dialog = AnalysisOptionsDialog(RunOptions())
    qtbot.addWidget(dialog)
    ok = dialog.buttons.button(QDialogButtonBox.StandardButton.Ok)
    assert dialog.options() == RunOptions()
    for name, check in dialog.sweep_checks.items():
        check.setChecked(name == "head_pattern")
    dialog.batch_spin.setValue(8)
    dialog.top_k_spin.setValue(12)
    dialog.seed_spin.setValue(42)
    dialog.seq_len_spin.setValue(30)
    dialog.analysis_checks["dla"].setChecked(False)
    assert dialog.options() == RunOptions(sweeps=("head_pattern",), batch_size=8, top_k=12, head_seed=42,
                                          head_seq_len=30,
                                          analyses=tuple(name for name in ALL_ANALYSES if name != "dla"))
    assert ok.isEnabled()

    dialog.sweep_checks["head_pattern"].setChecked(False)
    assert not ok.isEnabled() and "patching grid" in dialog.problem.text()
    # Without either patching analysis the grids do not matter.
    dialog.analysis_checks["patching"].setChecked(False)
    dialog.analysis_checks["attribution_patching"].setChecked(False)
    assert ok.isEnabled() and not dialog.sweeps_box.isEnabled()
    for check in dialog.analysis_checks.values():
        check.setChecked(False)
    assert not ok.isEnabled() and "at least one analysis" in dialog.problem.text()

    dialog.buttons.button(QDialogButtonBox.StandardButton.RestoreDefaults).click()
    assert dialog.options() == RunOptions()
    assert dialog.batch_spin.text() == "Automatic"


def test_window_applies_remembers_and_saves_the_options(qtbot, window, settings, tmp_path):
    action = window.actions_by_name["run_options"]
    run_menu = next(menu_action.menu() for menu_action in window.menuBar().actions() if menu_action.text() == "&Run")
    assert action in run_menu.actions()
    action.trigger()
    dialog = window.options_dialog
    assert dialog is not None and dialog.isVisible()
    dialog.analysis_checks["head_scores"].setChecked(False)
    for name, check in dialog.sweep_checks.items():
        check.setChecked(name in ("head_z", "attn_out"))
    dialog.top_k_spin.setValue(4)
    dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()
    chosen = window.run_options
    assert chosen.sweeps == ("attn_out", "head_z") and chosen.top_k == 4
    assert not window.analysis_actions["head_scores"].isChecked()
    assert load_options(settings) == chosen
    assert window.current_session().settings["options"] == chosen.to_dict()

    # Sessions carry their options: opening one brings them back.
    path = tmp_path / "options.ioisession"
    assert window.save_session_to(path)
    window.set_run_options(RunOptions())
    assert window.open_session(path)
    assert window.run_options == chosen


def test_a_run_uses_the_chosen_sweeps(qtbot, loaded_window):
    window = loaded_window
    window.set_run_options(RunOptions(sweeps=("head_z",), top_k=3, analyses=("logit_lens", "patching")))
    with qtbot.waitSignal(window.results_shown, timeout=RUN_TIMEOUT_MS) as shown:
        assert window.run()
    results = shown.args[0]
    assert results.has_array("patch_head_z")
    assert not results.has_array("patch_resid_pre") and not results.has_array("patch_head_v")
    assert results.array("logit_lens_grid_top_ids").shape[-1] == 3


def test_lens_norm_option_reaches_the_logit_lens_and_round_trips(qtbot):
    from ioi_desktop.core.analyses.logit_lens import LENS_NORMS
    from ioi_desktop.gui.dialogs.analysis_options import LENS_NORM_CHOICES

    assert [key for key, _ in LENS_NORM_CHOICES] == list(LENS_NORMS)
    chosen = RunOptions(lens_norm="recompute")
    assert chosen.runner_options(["logit_lens", "dla"]) == {"logit_lens": {"lens_norm": "recompute"}, "dla": {}}
    assert RunOptions.from_dict(chosen.to_dict()) == chosen
    assert RunOptions.from_dict({"lens_norm": "sometimes"}) == RunOptions()
    dialog = AnalysisOptionsDialog(chosen)
    qtbot.addWidget(dialog)
    assert dialog.lens_norm_combo.currentData() == "recompute" and dialog.options() == chosen
    dialog.lens_norm_combo.setCurrentIndex(dialog.lens_norm_combo.findData("cached_final"))
    # The notebook's method is the analysis's default, so choosing it passes nothing.
    assert dialog.options().lens_norm is None
    dialog.analysis_checks["logit_lens"].setChecked(False)
    assert not dialog.lens_norm_combo.isEnabled()
