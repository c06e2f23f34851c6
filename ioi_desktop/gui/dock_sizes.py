"""Dock sizes that follow the window the way a researcher expects: the results get the room.

The main window has no central widget: the inputs (model picker over the
prompt editor) form the left dock column, the result panels the right one,
with the attention viewer under the result tabs. When the window is resized,
Qt shares the change between the docks in proportion, so maximising a 1280 px
window on a 1920 px screen doubled the input column (about 950 px of mostly
empty form) while the results gained little, shrinking it back left half the
window to the inputs with the result tabs elided ("Overvi…"), and on a laptop's
800 px the attention viewer kept ~250 px, two rows of its pattern.

:class:`DockExtent` keeps one dock at the width (or height) it had, the user's
own after dragging the separator, at most a share of the window, and gives
every other pixel to the dock beside (or above) it. The main window keeps the
input column's width (at most ``INPUT_SHARE`` of the window) and the attention
viewer's height (``ATTENTION_HEIGHT`` at first, at most ``ATTENTION_SHARE``).

Vertically, the model picker only needs its own height (its form and the
loaded model's description); the prompt editor below it takes the rest
(:func:`keep_to_its_height`).
"""

from __future__ import annotations

from typing import Callable

from PySide6.QtCore import QEvent, QObject, QSize, Qt, QTimer
from PySide6.QtWidgets import QDockWidget, QMainWindow, QSizePolicy, QWidget

# The input column never takes more than this share of the window's width when the window is resized.
INPUT_SHARE = 0.35
# The input column's first width (the model folder's path and the prompt table's columns fit).
INPUT_WIDTH = 470
# The attention viewer's first height: a 15-token prompt's pattern (the demo's) with every query row and
# key label on screen; at most this share of the window's height, so that on a laptop's 800 px the
# result tabs above keep about as much (a 15-token pattern at its smallest labelled cells still fits).
ATTENTION_HEIGHT = 460
ATTENTION_SHARE = 0.475
# Pixels within which a dock's size counts as the one asked for (Qt's split lands a few pixels off).
SLACK = 4


class DockExtent(QObject):
    """Keeps ``dock`` at its width (``Qt.Horizontal``) or height (``Qt.Vertical``) when ``window`` is
    resized, at most ``max_share`` of the window; ``other()`` (the dock beside or above it, or None)
    takes the difference. ``size`` is the extent to keep: ``initial`` at first, then the dock's size
    after the user drags a separator or a layout is restored (:meth:`adopt_soon`); never the sizes Qt
    itself gives the docks while laying out a resized window. The window calls :meth:`window_resized`
    from its ``resizeEvent``."""

    def __init__(self, window: QMainWindow, dock: QDockWidget, other: Callable[[], QDockWidget | None],
                 orientation: Qt.Orientation, area: Qt.DockWidgetArea, max_share: float,
                 initial: int | None = None) -> None:
        super().__init__(window)
        self.window = window
        self.dock = dock
        self.other = other
        self.orientation = orientation
        self.area = area
        self.max_share = max_share
        self.size: int | None = initial
        self._window_size: QSize | None = None
        self._pending = False
        self._dragging = False
        dock.installEventFilter(self)
        window.installEventFilter(self)

    def _extent(self, size: QSize) -> int:
        return size.width() if self.orientation == Qt.Orientation.Horizontal else size.height()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt override
        kind = event.type()
        if watched is self.window:
            # The dock separators belong to the window itself: a press on the window (not on a child)
            # starts a drag of one.
            if kind == QEvent.Type.MouseButtonPress:
                self._dragging = True
            elif kind == QEvent.Type.MouseButtonRelease:
                self._dragging = False
        elif watched is self.dock and kind == QEvent.Type.Resize and self._dragging and self._applies():
            self.size = self._extent(event.size())
        return False

    def adopt_soon(self) -> None:
        """Keep the size the dock has once Qt has applied a restored layout (settings, a session)."""
        QTimer.singleShot(0, self._adopt)

    def _adopt(self) -> None:
        if self._applies():
            self.size = self._extent(self.dock.size())

    def reset(self, size: int | None) -> None:
        """Keep ``size`` from now on (the default layout's) and apply it, after a pending :meth:`adopt_soon`."""
        QTimer.singleShot(0, lambda: self._reset(size))

    def _reset(self, size: int | None) -> None:
        self.size = size
        self._restore()

    def _applies(self) -> bool:
        dock = self.dock
        return (dock.isVisible() and not dock.isFloating() and self.window.dockWidgetArea(dock) == self.area
                and not self.window.tabifiedDockWidgets(dock))

    def window_resized(self) -> None:
        """Give the dock back its size on the next event-loop turn, once Qt has finished laying the docks
        out for the new window size (a ``resizeDocks`` inside the resize itself is overridden by it)."""
        self._window_size = self.window.size()
        self._dragging = False  # a resize is no separator drag (a release may have gone elsewhere)
        self.restore_soon()

    def restore_soon(self) -> None:
        if not self._pending:
            self._pending = True
            QTimer.singleShot(0, self._restore)

    def _restore(self) -> None:
        self._pending = False
        if self._window_size is None:
            self._window_size = self.window.size()
        other = self.other()
        if self.size is None or other is None or not self._applies() or other.isFloating():
            return
        window = self._extent(self.window.size())
        target = max(self._extent(self.dock.minimumSizeHint()), min(self.size, int(window * self.max_share)))
        # What the two docks share now (the window less menus, bars and separators): Qt scales sizes
        # that do not add up to it, which would land the dock off its target.
        total = self._extent(self.dock.size()) + self._extent(other.size())
        if abs(self._extent(self.dock.size()) - target) > SLACK:
            self.window.resizeDocks([self.dock, other], [target, total - target], self.orientation)


def keep_to_its_height(widget: QWidget) -> None:
    """Let ``widget`` (a dock's contents) shrink but not grow past its size hint, so the dock
    below it in the same column gets the extra height of a taller window."""
    policy = widget.sizePolicy()
    widget.setSizePolicy(policy.horizontalPolicy(), QSizePolicy.Policy.Maximum)
