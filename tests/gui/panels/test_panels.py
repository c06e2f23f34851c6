"""Every result panel renders realistic results, follows the selection, exports, and is screenshotted."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt

from ioi_desktop.gui.panels import (
    RESULT_PANELS,
    AttentionPanel,
    AttributionPanel,
    HeadScoresPanel,
    LogitLensPanel,
    OverviewPanel,
    PatchingPanel,
)
from ioi_desktop.gui.panels.result_panel import slug

from .conftest import save_screenshot

PANEL_SIZE = (1150, 620)


def make_panel(qtbot, cls, selection, run_results=None, roles=None, size=PANEL_SIZE):
    panel = cls(selection)
    qtbot.addWidget(panel)
    panel.resize(*size)
    panel.show()
    qtbot.waitExposed(panel)
    if roles is not None:
        panel.set_head_roles(roles)
    if run_results is not None:
        panel.show_results(run_results)
    return panel


def click_cell(qtbot, heatmap, row, col):
    """A real mouse click at the centre of a heatmap cell."""
    scene_point = heatmap.plot.vb.mapViewToScene(QPointF(col, row))
    qtbot.mouseClick(heatmap.viewport(), Qt.MouseButton.LeftButton, pos=heatmap.mapFromScene(scene_point))


def test_registry_lists_every_panel_with_the_contract():
    assert [cls.TITLE for cls in RESULT_PANELS] == [
        "Overview", "Logit lens", "Attribution", "Attention", "Patching", "Ablation", "Path patching",
        "Head scores"]
    from ioi_desktop.core.analyses import analysis_names

    covered = {name for cls in RESULT_PANELS for name in cls.analyses()}
    assert covered == set(analysis_names())
    for cls in RESULT_PANELS:
        for method in ("show_results", "show_rows", "clear", "export"):
            assert callable(getattr(cls, method))


@pytest.mark.parametrize("cls", RESULT_PANELS, ids=lambda cls: slug(cls.TITLE))
def test_panel_renders_exports_and_clears(qtbot, tmp_path, cls, selection, run_results, gpt2_roles):
    panel = make_panel(qtbot, cls, selection, run_results, roles=gpt2_roles)
    selection.update(prompt=0, layer=9, head=9, position=14)
    save_screenshot(panel, f"panel_{slug(cls.TITLE)}")
    written = panel.export(tmp_path)
    suffixes = {path.suffix for path in written}
    assert {".png", ".svg", ".csv"} <= suffixes, written
    for path in written:
        assert path.stat().st_size > 100, path
    assert b"<svg" in next(p for p in written if p.suffix == ".svg").read_bytes()[:400]
    panel.clear()
    assert panel.export(tmp_path / "empty") == []


def test_head_click_in_patching_selects_head_everywhere(qtbot, selection, run_results, gpt2_roles):
    patching = make_panel(qtbot, PatchingPanel, selection, run_results, roles=gpt2_roles)
    attention = make_panel(qtbot, AttentionPanel, selection, run_results)
    scores = make_panel(qtbot, HeadScoresPanel, selection, run_results)
    attribution = make_panel(qtbot, AttributionPanel, selection, run_results)
    assert patching.grid_combo.currentData() == "resid_pre"  # the notebook's first grid
    patching.grid_combo.setCurrentIndex(patching.grid_combo.findData("head_z"))
    click_cell(qtbot, patching.exact, 10, 7)
    assert (selection.layer, selection.head) == (10, 7)
    assert attention.shown_head() == (0, 10, 7)
    expected = run_results.array("attention_pattern")[0, 10, 7]
    np.testing.assert_array_equal(attention.heatmap.values(), expected)
    assert "L10H7" in attention.heatmap.plot.titleLabel.text
    for heatmap in (*scores.heatmaps.values(), attribution.heads, patching.exact):
        assert heatmap.selected() == (10, 7)
    assert patching.scatter_selected.points()[0].pos().x() == pytest.approx(
        float(run_results.array("patch_head_pattern")[10, 7]))
    assert "negative name mover" in patching.exact.describe_cell(10, 7)
    save_screenshot(attention, "linked_attention_after_patching_click_L10H7")


def test_scatter_point_click_selects_head(qtbot, selection, run_results):
    patching = make_panel(qtbot, PatchingPanel, selection, run_results)
    point = next(p for p in patching.scatter.points() if p.data() == (8, 6))
    patching.scatter.sigClicked.emit(patching.scatter, [point], None)  # what a click on the point sends
    assert (selection.layer, selection.head) == (8, 6)


def test_position_click_in_logit_lens_selects_layer_and_position(qtbot, selection, run_results):
    lens = make_panel(qtbot, LogitLensPanel, selection, run_results)
    attention = make_panel(qtbot, AttentionPanel, selection, run_results)
    patching = make_panel(qtbot, PatchingPanel, selection, run_results)
    patching.grid_combo.setCurrentIndex(patching.grid_combo.findData("resid_pre"))
    click_cell(qtbot, lens.grid, 6, 10)
    assert (selection.layer, selection.position) == (6, 10)
    assert lens.grid.selected() == (6, 10)
    assert patching.exact.selected() == (6, 10)
    assert attention.query_position() == 10
    assert attention.strip.weights() == pytest.approx(attention.shown_pattern()[10])


def test_logit_lens_cells_show_top_tokens_and_switch_colour(qtbot, selection, run_results):
    lens = make_panel(qtbot, LogitLensPanel, selection, run_results)
    texts = lens.grid.cell_texts()
    assert len(texts) == 13 * 15 and "Mary" in texts
    assert lens.grid.levels() == (0.0, 1.0)
    lens.colour_combo.setCurrentIndex(1)
    low, high = lens.grid.levels()
    assert low == -high and high > 0
    np.testing.assert_array_equal(lens.grid.values(), run_results.array("logit_lens_grid_logit_diff")[:, 0, :])
    selection.select_prompt(3)
    np.testing.assert_array_equal(lens.grid.values(), run_results.array("logit_lens_grid_logit_diff")[:, 3, :])
    save_screenshot(lens, "panel_logit_lens_logit_diff_prompt3")


def test_attention_keys_step_heads_and_prompts(qtbot, selection, run_results):
    attention = make_panel(qtbot, AttentionPanel, selection, run_results)
    selection.select_head(9, 11)
    attention.setFocus()
    qtbot.keyClick(attention, Qt.Key.Key_Right)
    assert (selection.layer, selection.head) == (10, 0)
    qtbot.keyClick(attention, Qt.Key.Key_Left)
    assert (selection.layer, selection.head) == (9, 11)
    qtbot.keyClick(attention, Qt.Key.Key_Down)
    assert (selection.layer, selection.head) == (10, 11)
    qtbot.keyClick(attention, Qt.Key.Key_PageDown)
    assert selection.prompt == 1
    qtbot.keyClick(attention, Qt.Key.Key_PageUp)
    qtbot.keyClick(attention, Qt.Key.Key_PageUp)
    assert selection.prompt == 7
    # The keys also work while the heatmap itself has the focus (after a click on it).
    qtbot.keyClick(attention.heatmap, Qt.Key.Key_Right)
    assert (selection.layer, selection.head) == (11, 0)


def test_attention_query_click_highlights_strongest_keys_and_pins(qtbot, selection, run_results):
    attention = make_panel(qtbot, AttentionPanel, selection, run_results)
    selection.select_head(9, 9)
    click_cell(qtbot, attention.heatmap, 14, 4)
    assert (selection.position, selection.key_pos) == (14, 4)
    row = run_results.array("attention_pattern")[0, 9, 9, 14]
    assert attention.strip.strongest(1) == [int(np.argmax(row))] == [4]  # the IO token of prompt 0
    assert "query 14" in attention.heatmap.describe_cell(14, 4) and "Mary" in attention.heatmap.describe_cell(14, 4)
    attention.pin_button.click()
    selection.select_head(10, 7)
    attention.pin_button.click()
    selection.select_head(4, 11)
    assert attention.pinned_heads() == [(9, 9), (10, 7)]
    assert all(m.isVisible() for m in attention.pinned_maps[:2]) and not attention.pinned_maps[2].isVisible()
    save_screenshot(attention, "panel_attention_pinned_heads")


def test_prompt_change_updates_overview(qtbot, selection, run_results):
    overview = make_panel(qtbot, OverviewPanel, selection, run_results)
    assert overview.top_table.item(0, 0).text() == repr(" Mary")
    selection.select_prompt(1)
    assert overview.top_table.item(0, 0).text() == repr(" John")
    assert overview.strip.roles_at(2) == ["IO"]
    assert "100%" in overview.summary.text()


def test_overview_bar_click_selects_prompt(qtbot, selection, run_results):
    overview = make_panel(qtbot, OverviewPanel, selection, run_results)
    scene_point = overview.bars.plot.vb.mapViewToScene(QPointF(5, 1.0))
    qtbot.mouseClick(overview.bars.viewport(), Qt.MouseButton.LeftButton,
                     pos=overview.bars.mapFromScene(scene_point))
    assert selection.prompt == 5


def test_patching_modes_and_error_grid(qtbot, selection, run_results):
    patching = make_panel(qtbot, PatchingPanel, selection, run_results)
    patching.grid_combo.setCurrentIndex(patching.grid_combo.findData("head_z"))
    patching.mode_combo.setCurrentIndex(2)
    assert patching.exact.isVisible() and patching.estimate.isVisible() and patching.error.isVisible()
    np.testing.assert_allclose(patching.error.values(),
                               run_results.array("atp_head_z") - run_results.array("patch_head_z"))
    assert patching.exact.levels() == patching.estimate.levels()
    patching.mode_combo.setCurrentIndex(1)
    assert not patching.exact.isVisible() and patching.estimate.isVisible()
    patching.grid_combo.setCurrentIndex(patching.grid_combo.findData("head_z_by_pos"))
    selection.select_head(10, 7)
    np.testing.assert_array_equal(patching.estimate.values(), run_results.array("atp_head_z_by_pos")[:, :, 7])
    patching.mode_combo.setCurrentIndex(2)
    patching.grid_combo.setCurrentIndex(patching.grid_combo.findData("resid_pre"))
    save_screenshot(patching, "panel_patching_resid_exact_estimate_error")


def test_partial_rows_fill_in(qtbot, selection, run_results):
    from ioi_desktop.core.workbench import PartialGrid

    patching = make_panel(qtbot, PatchingPanel, selection)
    full = run_results.array("patch_head_z")
    grid = PartialGrid("patching", "patch_head_z", full.shape, "float32")
    for layer in range(3):
        grid.add((layer,), full[layer])
        patching.show_rows("patch_head_z", grid)
    shown = patching.exact.values()
    assert shown.shape == full.shape
    np.testing.assert_array_equal(shown[:3], full[:3])
    assert np.isnan(shown[3:]).all()
    save_screenshot(patching, "panel_patching_partial_rows")
    patching.show_results(run_results)
    assert patching.grid_combo.currentData() == "resid_pre"  # complete results open on the notebook's first grid
    patching.grid_combo.setCurrentIndex(patching.grid_combo.findData("head_z"))
    np.testing.assert_array_equal(patching.exact.values(), full)

    scores = make_panel(qtbot, HeadScoresPanel, selection)
    scores.show_rows("patch_head_z", grid)
    assert scores.heatmaps["head_score_prev"].values().size == 0


def test_roles_overlay_marks_known_heads_and_toggles(qtbot, selection, run_results, gpt2_roles):
    scores = make_panel(qtbot, HeadScoresPanel, selection, run_results, roles=gpt2_roles)
    heatmap = scores.heatmaps["head_score_induction"]
    assert heatmap.marker_count() == len(gpt2_roles.roles)
    assert scores.roles_checkbox.isEnabled()
    scores.roles_checkbox.setChecked(False)
    assert heatmap.marker_count() == 0
    scores.roles_checkbox.setChecked(True)
    assert heatmap.marker_count() == len(gpt2_roles.roles)


def test_signed_grids_use_symmetric_levels(qtbot, selection, run_results):
    attribution = make_panel(qtbot, AttributionPanel, selection, run_results)
    low, high = attribution.heads.levels()
    assert low == -high == pytest.approx(-float(np.abs(run_results.array("dla_head")).max()))
    scores = make_panel(qtbot, HeadScoresPanel, selection, run_results)
    assert scores.heatmaps["head_score_prev"].levels() == (0.0, 1.0)


def test_attribution_shows_the_selected_prompt_on_request(qtbot, selection, run_results):
    attribution = make_panel(qtbot, AttributionPanel, selection, run_results)
    np.testing.assert_array_equal(attribution.heads.values(), run_results.array("dla_head"))
    attribution.scope_combo.setCurrentIndex(1)
    selection.select_prompt(5)
    np.testing.assert_array_equal(attribution.heads.values(), run_results.array("dla_head_by_prompt")[5])
    assert "prompt 5" in attribution.heads.plot.titleLabel.text
    save_screenshot(attribution, "panel_attribution_prompt5")


def test_a_deleted_panel_no_longer_hears_the_selection(qtbot, selection, run_results):
    import shiboken6

    panel = AttentionPanel(selection)
    panel.show_results(run_results)
    shiboken6.delete(panel)
    selection.select_head(3, 3)
    assert selection.head == 3


def test_plots_follow_a_dark_palette(qtbot, selection, run_results):
    from PySide6.QtGui import QColor, QPalette
    from PySide6.QtWidgets import QApplication

    panel = make_panel(qtbot, PatchingPanel, selection, run_results)
    app = QApplication.instance()
    light = app.palette()
    dark = QPalette(light)
    dark.setColor(QPalette.ColorRole.Base, QColor(30, 30, 30))
    dark.setColor(QPalette.ColorRole.Text, QColor(230, 230, 230))
    try:
        app.setPalette(dark)
        qtbot.waitUntil(lambda: panel.exact.backgroundBrush().color().lightness() < 60)
        assert panel.scatter_view.backgroundBrush().color().lightness() < 60
        assert all(label.color.lightness() > 200 for label in panel.scatter_labels)
        save_screenshot(panel, "panel_patching_dark")
    finally:
        app.setPalette(light)
