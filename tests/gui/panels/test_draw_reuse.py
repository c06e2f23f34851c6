"""Drawing reuses what is drawn and draws each view once (issue 17's GUI-thread budget, as structure)."""

from __future__ import annotations

import numpy as np
import pytest

from ioi_desktop.gui.panels.attention import AttentionPanel
from ioi_desktop.gui.panels.logit_lens import LogitLensPanel
from ioi_desktop.gui.panels.overview import OverviewPanel
from ioi_desktop.gui.widgets import BarChart, Heatmap


def counting(target, name: str) -> list:
    """Wrap ``target.name`` (an instance attribute) so each call is recorded."""
    calls = []
    original = getattr(target, name)

    def wrapper(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    setattr(target, name, wrapper)
    return calls


@pytest.mark.parametrize("panel_class, view, method", [
    (OverviewPanel, "strip", "set_tokens"),
    (LogitLensPanel, "grid", "set_data"),
    (AttentionPanel, "heatmap", "set_data"),
])
def test_results_draw_the_selected_prompts_views_once(qtbot, selection, run_results, panel_class, view, method):
    # Drawing results used to draw the selected prompt's views, then again for the selection.
    panel = panel_class(selection)
    qtbot.addWidget(panel)
    calls = counting(getattr(panel, view), method)
    panel.show_results(run_results)
    assert len(calls) == 1, f"{panel.TITLE}: {view}.{method} ran {len(calls)} times for one draw"
    selection.select_prompt(1)
    assert len(calls) == 2, "choosing another prompt redraws it"


def test_a_bar_chart_reuses_its_bars_and_legend_for_new_data(qtbot):
    import pyqtgraph as pg

    chart = BarChart()
    qtbot.addWidget(chart)
    categories = [str(i) for i in range(1000)]
    chart.set_bars(categories, {"clean": np.arange(1000.0), "corrupted": -np.arange(1000.0)})
    items = [item for item in chart.plot.items if isinstance(item, pg.BarGraphItem)]
    labels = [label for _sample, label in chart.legend.items]
    assert len(items) == 2 and len(labels) == 2
    chart.set_bars([], {})  # a run starts: cleared
    assert chart.series() == {} and not any(item.isVisible() for item in items)
    chart.set_bars(categories, {"clean": np.ones(1000), "corrupted": np.zeros(1000)})
    assert [item for item in chart.plot.items if isinstance(item, pg.BarGraphItem)] == items, "bars were rebuilt"
    assert [label for _sample, label in chart.legend.items] == labels, "the legend was rebuilt"
    assert all(item.isVisible() for item in items)
    np.testing.assert_array_equal(chart.series()["clean"], np.ones(1000))
    # Other series: new items, named in the legend.
    chart.set_bars(categories[:3], {"attribution": np.array([1.0, -1.0, 0.5])}, by_sign=True)
    assert len([item for item in chart.plot.items if isinstance(item, pg.BarGraphItem)]) == 1
    assert not chart.legend.isVisible()


def test_heatmap_markers_are_built_once_and_their_legend_only_when_shown(qtbot):
    heatmap = Heatmap()
    qtbot.addWidget(heatmap)
    heatmap.set_data(np.zeros((12, 12), dtype=np.float32))
    cells = {(9, 9): "name mover", (9, 6): "name mover", (10, 7): "negative name mover"}
    descriptions = {"negative name mover": "", "name mover": ""}
    heatmap.set_markers(cells, descriptions, show_legend=False)
    assert heatmap.marker_count() == 3
    assert heatmap.legend.items == [], "a legend that is not shown was built (its labels are the costly part)"
    heatmap.set_markers(cells, descriptions)
    labels = [label for _sample, label in heatmap.legend.items]
    assert [label.text for label in labels] == ["negative name mover", "name mover"]
    heatmap.set_markers(dict(cells), dict(descriptions))  # a redraw with the same roles
    assert [label for _sample, label in heatmap.legend.items] == labels, "the same markers were rebuilt"
    # An exported figure hides them without rebuilding them.
    heatmap.show_markers(False)
    assert heatmap.marker_count() == 0 and not heatmap.legend.isVisible()
    heatmap.show_markers(True)
    assert heatmap.marker_count() == 3 and heatmap.legend.isVisible()
    assert [label for _sample, label in heatmap.legend.items] == labels


def test_a_new_set_of_1000_pairs_sizes_the_row_numbers_without_asking_for_hundreds_of_headers(qtbot):
    from ioi_desktop.core.prompts import PromptPair, PromptSet
    from ioi_desktop.core.selection import SelectionModel
    from ioi_desktop.gui.panels.prompt_editor import PromptEditor

    editor = PromptEditor(SelectionModel())
    qtbot.addWidget(editor)
    editor.resize(500, 700)
    editor.show()
    qtbot.waitExposed(editor)
    asked = []
    model = editor.model
    original = model.headerData
    model.headerData = lambda section, orientation, role=0: (asked.append(section),
                                                             original(section, orientation, role))[1]
    try:
        pairs = tuple(PromptPair(f"When Ann and Bob went out, Bob gave it to {i}", f"When Ann and Bob went out, Cy gave "
                                 f"it to {i}", " Ann", " Bob") for i in range(1000))
        editor.set_prompt_set(PromptSet(pairs))
        editor.table.verticalHeader().sizeHint()
        editor.repaint()
    finally:
        model.headerData = original
    header = editor.table.verticalHeader()
    # Qt measures the first and last hundred row numbers (several calls each); only the rows on screen are asked now.
    assert len(set(asked)) < 100, f"{len(set(asked))} rows' headers were asked for"
    assert header.sectionSizeFromContents(999).width() >= header.sectionSizeFromContents(9).width()
    assert model.headerData(999, header.orientation()) == "999"


def test_a_token_strip_asks_for_a_relayout_only_when_its_size_hints_change(qtbot):
    from ioi_desktop.gui.widgets import TokenStrip

    strip = TokenStrip()
    qtbot.addWidget(strip)
    strip.resize(400, 80)
    tokens = ["When", " John", " and", " Mary", " went", " to", " the", " shops"]
    strip.set_tokens(tokens, {"IO": 3})
    asked = []
    strip.updateGeometry = lambda: asked.append(True)
    # Another prompt of the same shape (the selection moved to a similar pair): the strip repaints alone.
    strip.set_tokens(tokens, {"IO": 1})
    assert asked == [], "new tokens of the same size relayout the window around the strip"
    height = strip.heightForWidth(400)
    strip.set_tokens(tokens * 3, {"IO": 3})
    assert asked == [True] and strip.heightForWidth(400) > height
    assert strip.tokens() == tokens * 3
