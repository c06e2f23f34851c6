"""Panels of the main window.

``RESULT_PANELS`` lists the result panels in display order; the main window
builds one dock per entry. Each follows the contract in
:mod:`ioi_desktop.gui.panels.result_panel`.
"""

from ioi_desktop.gui.panels.attention import AttentionPanel
from ioi_desktop.gui.panels.attribution import AttributionPanel
from ioi_desktop.gui.panels.head_scores import HeadScoresPanel
from ioi_desktop.gui.panels.logit_lens import LogitLensPanel
from ioi_desktop.gui.panels.overview import OverviewPanel
from ioi_desktop.gui.panels.patching import PatchingPanel
from ioi_desktop.gui.panels.result_panel import ResultPanel

RESULT_PANELS: list[type[ResultPanel]] = [
    OverviewPanel,
    LogitLensPanel,
    AttributionPanel,
    AttentionPanel,
    PatchingPanel,
    HeadScoresPanel,
]

__all__ = [
    "RESULT_PANELS",
    "AttentionPanel",
    "AttributionPanel",
    "HeadScoresPanel",
    "LogitLensPanel",
    "OverviewPanel",
    "PatchingPanel",
    "ResultPanel",
]
