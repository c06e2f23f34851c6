"""Dock sizes that follow the window the way a researcher expects: the results get the room.

The main window has no central widget: the inputs (model picker over the
prompt editor) form the left dock column, the result panels the right one.
When the window is resized, Qt shares the change between both columns, so
maximising a 1280 px window on a 1920 px screen doubled the input column
(about 950 px of mostly empty form) while the results gained little, and
shrinking it back left half the window to the inputs with the result tabs
elided ("Overvi…"). :class:`InputColumnWidth` keeps the input column at the
width it had (the user's own, after dragging the separator), at most
``MAX_SHARE`` of the window, and gives every other pixel to the results.

Vertically, the model picker only needs its own height (its form and the
loaded model's description); the prompt editor below it takes the rest
(:func:`keep_to_its_height`).
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt, QTimer
from PySide6.QtWidgets import QDockWidget, QMainWindow, QSizePolicy, QWidget

# The input column never takes more than this share of the window's width when the window is resized.
MAX_SHARE = 0.4
# Pixels within which a column's width counts as the one asked for.
SLACK = 4


class InputColumnWidth(QObject):
    """Keeps ``left``'s dock column at its width when ``window`` is resized; the right column
    (``right()``, a dock there) takes the difference. Install with :meth:`install`; the window calls
    :meth:`window_resized` from its ``resizeEvent`` (after Qt has laid the docks out again).

    The width to keep is the column's width whenever it changes while the window keeps its size
    (the user dragged the separator, a layout was restored, the window placed its docks)."""

    def __init__(self, window: QMainWindow, left: QDockWidget, right) -> None:
        super().__init__(window)
        self.window = window
        self.left = left
        self.right = right  # a callable: the dock of the right column to size against (or None)
        self.width: int | None = None
        self._window_size = None
        self._restoring = False
        self._target: int | None = None
        self._pending = False

    def install(self) -> None:
        self.left.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt override
        if watched is self.left and event.type() == QEvent.Type.Resize and not self._restoring:
            # Qt lands a restored width a few pixels off (separators): that is no new width to keep,
            # else repeated resizes would shrink the column step by step.
            ours = self._target is not None and abs(event.size().width() - self._target) <= SLACK
            if not ours and (self._window_size is None or self._window_size == self.window.size()):
                self.width = event.size().width()
        return False

    def _applies(self) -> bool:
        left = self.left
        return (left.isVisible() and not left.isFloating()
                and self.window.dockWidgetArea(left) == Qt.DockWidgetArea.LeftDockWidgetArea)

    def window_resized(self) -> None:
        """Give the input column back its width (capped at MAX_SHARE of the window), the rest to the results:
        on the next event-loop turn, once Qt has finished laying the docks out for the new size (a
        ``resizeDocks`` inside the resize itself is overridden by that layout)."""
        first = self._window_size is None
        self._window_size = self.window.size()
        if not first and not self._pending:
            self._pending = True
            QTimer.singleShot(0, self._restore)

    def _restore(self) -> None:
        self._pending = False
        right = self.right()
        if self.width is None or right is None or not self._applies() or right.isFloating():
            return
        total = self.window.width()
        target = max(self.left.minimumSizeHint().width(), min(self.width, int(total * MAX_SHARE)))
        if abs(self.left.width() - target) > SLACK:
            self._target = target
            self._restoring = True
            try:
                self.window.resizeDocks([self.left, right], [target, total - target], Qt.Orientation.Horizontal)
            finally:
                self._restoring = False


def keep_to_its_height(widget: QWidget) -> None:
    """Let ``widget`` (a dock's contents) shrink but not grow past its size hint, so the dock
    below it in the same column gets the extra height of a taller window."""
    policy = widget.sizePolicy()
    widget.setSizePolicy(policy.horizontalPolicy(), QSizePolicy.Policy.Maximum)
