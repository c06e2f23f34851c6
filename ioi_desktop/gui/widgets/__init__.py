"""Reusable plotting widgets: heatmap, token strip, bar chart, and export helpers.

The package imports a widget's module only when the widget is first asked for,
so the token strip (plain Qt) can be used while the window is starting without
pulling in pyqtgraph, which the heatmap and the bar chart need.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_MODULES = {"BarChart": "bar_chart", "Heatmap": "heatmap", "TokenStrip": "token_strip"}


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return getattr(import_module(f"{__name__}.{_MODULES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = list(_MODULES)
