"""Reusable plotting widgets: heatmap, token strip, bar chart, and export helpers."""

from ioi_desktop.gui.widgets.bar_chart import BarChart
from ioi_desktop.gui.widgets.heatmap import Heatmap
from ioi_desktop.gui.widgets.token_strip import TokenStrip

__all__ = ["BarChart", "Heatmap", "TokenStrip"]
