"""Streamed rows reach the panels without GUI-thread work that grows with the prompt count (issue 17)."""

from __future__ import annotations


def test_streamed_rows_are_drawn_from_the_workbench_grid_without_a_copy_of_it(qtbot, selection, run_results):
    import numpy as np

    from ioi_desktop.core.workbench import PartialGrid
    from ioi_desktop.gui.panels.logit_lens import LogitLensPanel

    lens = LogitLensPanel(selection)
    qtbot.addWidget(lens)
    grids = {}
    for name in LogitLensPanel.STREAMED:
        array = run_results.array(name)
        grids[name] = PartialGrid("logit_lens", name, array.shape, array.dtype.name)
        grids[name].add((0,), array[0])
        lens.show_rows(name, grids[name])
    values, ids, _signed = lens.grid_values()
    # The panel slices the selected prompt out of the grid itself: at 1000 prompts a masked copy of
    # the whole array per streamed row was tens of milliseconds on the GUI thread.
    probs = grids["logit_lens_grid_top_probs"].values
    assert np.shares_memory(values, probs), "the panel drew from a copy of the whole streamed array"
    np.testing.assert_array_equal(values[0], run_results.array("logit_lens_grid_top_probs")[0, 0, : values.shape[1], 0])
    assert np.isnan(values[1:]).all(), "rows not computed yet are blank"
    assert np.isnan(probs[1:]).all() and (grids["logit_lens_grid_top_ids"].values[1:] == -1).all()
