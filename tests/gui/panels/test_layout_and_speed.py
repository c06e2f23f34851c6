"""Startup imports, drawing cost and narrow windows: the panel-side performance and layout rules."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
from PySide6.QtWidgets import QSplitter, QTabWidget

from ioi_desktop.gui.panels.attention import AttentionPanel
from ioi_desktop.gui.panels.logit_lens import LogitLensPanel
from ioi_desktop.gui.panels.patching import NARROW_WIDTH, PatchingPanel
from ioi_desktop.gui.widgets.heatmap import Heatmap
from ioi_desktop.gui.widgets.token_strip import TokenStrip, TokenStripScroller


def test_the_window_module_imports_neither_pyqtgraph_nor_torch():
    # The window must be on screen before the plotting library (about a second) is imported.
    code = ("import sys, ioi_desktop.gui.main_window, ioi_desktop.gui.panels.prompt_editor; "
            "print(sorted(m for m in ('pyqtgraph', 'torch', 'transformer_lens') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"


def test_result_panels_are_listed_in_display_order_on_first_use():
    from ioi_desktop.gui import panels

    assert [cls.TITLE for cls in panels.RESULT_PANELS] == [
        "Overview", "Logit lens", "Attribution", "Attention", "Patching", "Ablation", "Path patching",
        "Head scores", "Circuit"]
    assert panels.PatchingPanel is PatchingPanel


def test_cell_text_is_one_item_rewritten_in_place(qtbot):
    heatmap = Heatmap()
    qtbot.addWidget(heatmap)
    heatmap.set_data(np.full((13, 15), np.nan, dtype=np.float32), signed=False, levels=(0.0, 1.0))
    items_before = len(heatmap.plot.vb.addedItems)
    for row in range(13):
        values = heatmap.values().copy()
        values[row] = 0.5
        heatmap.set_data(values, signed=False, levels=(0.0, 1.0))
        heatmap.set_cell_text([[f"t{r}{c}" if r <= row else "" for c in range(15)] for r in range(13)])
    assert len(heatmap.plot.vb.addedItems) == items_before
    assert len(heatmap.cell_texts()) == 13 * 15 and heatmap.cell_texts()[0] == "t00"


def test_a_panel_in_a_hidden_tab_draws_when_shown(qtbot, selection, run_results):
    tabs = QTabWidget()
    qtbot.addWidget(tabs)
    attention, lens = AttentionPanel(selection), LogitLensPanel(selection)
    tabs.addTab(attention, attention.TITLE)
    tabs.addTab(lens, lens.TITLE)
    tabs.resize(1000, 650)
    tabs.show()
    qtbot.waitExposed(tabs)
    for panel in (attention, lens):
        panel.show_results(run_results)
    # The panel on screen draws on the next event-loop turn (one panel per turn); the logit lens sits in
    # the hidden tab: its results wait until it is shown.
    qtbot.waitUntil(lambda: attention.heatmap.values().size > 0, timeout=2000)
    assert lens.grid.values().size == 0 and lens.needs_drawing
    tabs.setCurrentWidget(lens)
    qtbot.waitUntil(lambda: lens.grid.values().size > 0, timeout=2000)
    np.testing.assert_array_equal(lens.grid.values(), run_results.array("logit_lens_grid_top_probs")[:, 0, :, 0])

    # Streamed rows for a hidden panel are kept and drawn on show too.
    lens.clear()
    tabs.setCurrentWidget(attention)
    ids = run_results.array("logit_lens_grid_top_ids")
    probs = run_results.array("logit_lens_grid_top_probs")
    from ioi_desktop.core.workbench import PartialGrid

    for name, array in (("logit_lens_grid_top_ids", ids), ("logit_lens_grid_top_probs", probs)):
        grid = PartialGrid("logit_lens", name, array.shape, array.dtype.name)
        grid.add((0,), array[0])
        lens.show_rows(name, grid)
    # Not drawn while hidden: the grid still shows what it showed (clearing an on-screen panel waits
    # for its turn, and the tab was switched first), not the streamed rows with blank rows.
    assert lens.needs_drawing and not np.isnan(lens.grid.values()).any()
    tabs.setCurrentWidget(lens)
    qtbot.waitUntil(lambda: lens.grid.values().size > 0, timeout=2000)
    np.testing.assert_array_equal(lens.grid.values()[0], probs[0, 0, :, 0])
    assert np.isnan(lens.grid.values()[1:]).all()


def test_patching_panel_fits_a_laptop_and_stacks_the_scatter_when_narrow(qtbot, selection, run_results):
    panel = PatchingPanel(selection)
    qtbot.addWidget(panel)
    panel.show_results(run_results)
    # Beside the input docks of a 1280 px window the result panels get about 800 px.
    assert panel.minimumSizeHint().width() <= 620
    panel.resize(NARROW_WIDTH + 200, 600)
    panel.show()
    qtbot.waitExposed(panel)
    splitter = panel.findChild(QSplitter)
    assert splitter.orientation().name == "Horizontal"
    panel.resize(NARROW_WIDTH - 40, 600)
    qtbot.waitUntil(lambda: splitter.orientation().name == "Vertical", timeout=2000)
    panel.resize(NARROW_WIDTH + 200, 600)
    qtbot.waitUntil(lambda: splitter.orientation().name == "Horizontal", timeout=2000)


def test_a_long_token_strip_asks_for_all_rows_but_can_shrink_to_one(qtbot):
    strip = TokenStrip()
    scroller = TokenStripScroller(strip)
    qtbot.addWidget(scroller)
    scroller.resize(300, 400)
    scroller.show()
    qtbot.waitExposed(scroller)
    strip.set_tokens([f" token{i}" for i in range(30)], {"IO": 2, "END": 29})
    one_row = strip.heightForWidth(100_000)
    assert scroller.minimumSizeHint().height() == one_row
    qtbot.waitUntil(lambda: scroller.sizeHint().height() > 2 * one_row, timeout=2000)
