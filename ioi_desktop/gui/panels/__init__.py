"""Panels of the main window.

``RESULT_PANELS`` lists the result panels in display order; the main window
builds one dock per entry. Each follows the contract in
:mod:`ioi_desktop.gui.panels.result_panel`.

The result panels are pyqtgraph plots and importing them takes about a second,
so this package imports them only when ``RESULT_PANELS`` (or a panel class) is
first asked for; the input panels (model picker, prompt editor) are plain Qt
and are imported from their own modules while the window starts.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

# Result panel classes in display order: (module, class name).
_RESULT_PANELS = (
    ("overview", "OverviewPanel"),
    ("logit_lens", "LogitLensPanel"),
    ("attribution", "AttributionPanel"),
    ("attention", "AttentionPanel"),
    ("patching", "PatchingPanel"),
    ("ablation", "AblationPanel"),
    ("path_patching", "PathPatchingPanel"),
    ("head_scores", "HeadScoresPanel"),
    ("circuit", "CircuitPanel"),
)
_CLASSES = {name: module for module, name in _RESULT_PANELS} | {"ResultPanel": "result_panel"}


def __getattr__(name: str) -> Any:
    if name == "RESULT_PANELS":
        return [getattr(import_module(f"{__name__}.{module}"), cls) for module, cls in _RESULT_PANELS]
    if name in _CLASSES:
        return getattr(import_module(f"{__name__}.{_CLASSES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["RESULT_PANELS", *_CLASSES]
