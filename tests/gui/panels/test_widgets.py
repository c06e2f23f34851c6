"""The reusable widgets: heatmap, token strip, bar chart and export, driven with real mouse events."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt

from ioi_desktop.gui.widgets import BarChart, Heatmap, TokenStrip
from ioi_desktop.gui.widgets.colors import DIVERGING, SEQUENTIAL
from ioi_desktop.gui.widgets.export import export_grid_csv, export_png, export_svg, export_table_csv
from ioi_desktop.gui.widgets.heatmap import short_token, tick_labels

from .conftest import save_screenshot

TOKENS = ["<|endoftext|>", "When", " John", " and", " Mary", " went", " to", " the", " shops", ",", " John",
          " gave", " the", " bag", " to"]


def shown(qtbot, widget, size=(520, 420)):
    qtbot.addWidget(widget)
    widget.resize(*size)
    widget.show()
    qtbot.waitExposed(widget)
    return widget


def click_cell(qtbot, heatmap, row, col):
    scene_point = heatmap.plot.vb.mapViewToScene(QPointF(col, row))
    qtbot.mouseClick(heatmap.viewport(), Qt.MouseButton.LeftButton, pos=heatmap.mapFromScene(scene_point))


def test_heatmap_levels_colour_maps_and_float32(qtbot):
    heatmap = shown(qtbot, Heatmap(row_title="layer", col_title="head"))
    values = np.array([[0.5, -2.0], [1.0, 0.25]], dtype=np.float64)
    heatmap.set_data(values)
    assert heatmap.levels() == (-2.0, 2.0)
    assert heatmap.colorbar.colorMap() is DIVERGING
    assert heatmap.values().dtype == np.float32 and heatmap.values().flags.c_contiguous
    heatmap.set_data(np.abs(values), signed=False, levels=(0.0, 1.0))
    assert heatmap.levels() == (0.0, 1.0)
    assert heatmap.colorbar.colorMap() is SEQUENTIAL
    with pytest.raises(ValueError, match="2-D"):
        heatmap.set_data(np.zeros(3))


def test_heatmap_white_is_zero_and_hue_shows_sign():
    # The diverging map's centre is (near) white and its ends differ in hue: sign is never hidden.
    centre = DIVERGING.map(0.5, mode="qcolor")
    low, high = DIVERGING.map(0.0, mode="qcolor"), DIVERGING.map(1.0, mode="qcolor")
    assert min(centre.red(), centre.green(), centre.blue()) > 235
    assert low.red() > low.blue() and high.blue() > high.red()


def test_heatmap_click_hover_and_outline(qtbot):
    heatmap = shown(qtbot, Heatmap(row_title="layer", col_title="head"))
    values = np.arange(12, dtype=np.float32).reshape(3, 4) - 5
    heatmap.set_data(values)
    with qtbot.waitSignal(heatmap.cell_clicked) as blocker:
        click_cell(qtbot, heatmap, 2, 1)
    assert blocker.args == [2, 1]
    assert heatmap.describe_cell(2, 1) == "layer 2, head 1: +4"
    scene_point = heatmap.plot.vb.mapViewToScene(QPointF(3, 0))
    heatmap.scene().sigMouseMoved.emit(scene_point)  # what the mouse moving there sends
    assert heatmap.hover_label.text == "layer 0, head 3: -2"
    assert heatmap.cell_at(heatmap.plot.vb.mapViewToScene(QPointF(7, 7))) is None
    heatmap.set_selected((1, 2))
    assert heatmap.selected() == (1, 2) and heatmap.outline is not None
    assert heatmap.outline.center() == QPointF(2, 1)
    heatmap.set_selected(None)
    assert heatmap.outline is None


def test_heatmap_partial_rows_are_nan_until_filled(qtbot):
    heatmap = shown(qtbot, Heatmap())
    heatmap.set_data(np.full((3, 2), np.nan, dtype=np.float32))
    heatmap.set_row(1, np.array([0.5, -0.25]))
    assert np.isnan(heatmap.values()[0]).all()
    assert heatmap.levels() == (-0.5, 0.5)
    assert heatmap.describe_cell(0, 0).endswith("not computed yet")


def test_heatmap_cell_text_contrasts_with_cell_colour(qtbot):
    heatmap = shown(qtbot, Heatmap())
    heatmap.set_data(np.array([[0.0, 1.0]], dtype=np.float32), signed=False, levels=(0.0, 1.0))
    heatmap.set_cell_text([["dark", "light"]])
    assert heatmap.cell_texts() == ["dark", "light"]
    dark, light = heatmap.cell_text_colors()
    # viridis: 0 is dark purple (white text), 1 is yellow (black text).
    assert dark.lightness() > 200 and light.lightness() < 50
    heatmap.set_cell_text(None)
    assert heatmap.cell_texts() == []


def test_heatmap_markers_and_legend(qtbot):
    heatmap = shown(qtbot, Heatmap())
    heatmap.set_data(np.zeros((12, 12), dtype=np.float32))
    heatmap.set_markers({(9, 9): "name mover", (9, 6): "name mover", (10, 7): "negative name mover"},
                        {"negative name mover": "", "name mover": ""})
    assert heatmap.marker_count() == 3
    assert [label.text for _, label in heatmap.legend.items] == ["negative name mover", "name mover"]
    heatmap.set_markers({})
    assert heatmap.marker_count() == 0 and not heatmap.legend.isVisible()


def test_tick_labels_thin_out_and_tokens_shorten():
    assert tick_labels(["a", "b", "c", "d", "e"], max_ticks=2) == [(0, "a"), (3, "d")]
    assert short_token("<|endoftext|>") == "BOS"
    assert short_token(" Mary") == "Mary"
    assert short_token(" extraordinary") == "extra…"
    assert short_token(" ") == "' '"


def test_token_strip_roles_weights_and_clicks(qtbot):
    strip = shown(qtbot, TokenStrip(), size=(900, 80))
    strip.set_tokens(TOKENS, {"IO": 4, "S1": 2, "S2": 10, "END": 14, "absent": -1})
    assert strip.roles_at(4) == ["IO"] and strip.roles_at(0) == []
    weights = np.zeros(15, dtype=np.float32)
    weights[[4, 10, 2]] = [0.7, 0.2, 0.1]
    strip.set_weights(weights, "attention")
    assert strip.strongest(2) == [4, 10]
    strip.resize(900, strip.heightForWidth(900))
    with qtbot.waitSignal(strip.token_clicked) as blocker:
        qtbot.mouseClick(strip, Qt.MouseButton.LeftButton, pos=strip.box_rect(10).center().toPoint())
    assert blocker.args == [10]
    # Narrow widgets wrap tokens onto more lines.
    assert strip.heightForWidth(200) > strip.heightForWidth(2000)
    strip.set_selected(14)
    save_screenshot(strip, "widget_token_strip", min_size=(400, 40))


def test_bar_chart_grouped_bars_click_and_hover(qtbot):
    chart = shown(qtbot, BarChart(category_title="prompt", value_title="logit diff"))
    chart.set_bars(["0", "1", "2"], {"clean": np.array([3.3, 3.2, 2.7]), "corrupted": np.array([-3.3, -3.2, -2.7])})
    assert chart.describe(1) == "1 — clean: +3.2, corrupted: -3.2"
    with qtbot.waitSignal(chart.bar_clicked) as blocker:
        point = chart.plot.vb.mapViewToScene(QPointF(2, 1.0))
        qtbot.mouseClick(chart.viewport(), Qt.MouseButton.LeftButton, pos=chart.mapFromScene(point))
    assert blocker.args == [2]
    horizontal = shown(qtbot, BarChart(horizontal=True))
    horizontal.set_bars(["embed", "0_attn_out"], {"dla": np.array([0.1, -0.4])})
    point = horizontal.plot.vb.mapViewToScene(QPointF(-0.1, 1))
    assert horizontal.category_at(point) == 1


def test_export_writes_png_svg_and_csv(qtbot, tmp_path):
    heatmap = shown(qtbot, Heatmap(title="grid"))
    heatmap.set_data(np.array([[1.0, -1.0]], dtype=np.float32), ["L0"], ["a", "b,c"])
    png = export_png(heatmap, tmp_path / "grid.png")
    svg = export_svg(heatmap, tmp_path / "grid.svg")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in svg.read_bytes()[:500]
    grid_csv = export_grid_csv(tmp_path / "grid.csv", heatmap.values(), ["L0"], ["a", "b,c"], "layer")
    assert list(csv.reader(grid_csv.open())) == [["layer", "a", "b,c"], ["L0", "1", "-1"]]
    table = export_table_csv(tmp_path / "table.csv", ["name", "value"], [("x", 0.5), ("y", None)])
    assert list(csv.reader(table.open())) == [["name", "value"], ["x", "0.5"], ["y", ""]]
