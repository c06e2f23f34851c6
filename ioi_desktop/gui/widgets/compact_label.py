"""A wrapped status line that folds to one elided line in a short panel, its full text in the tooltip.

The result panels explain what they show in a wrapped label above their plots
(two or three lines at a laptop's width). In a short dock those lines are
taken from the plot, which then has rows a few pixels tall; folded to one line
ending in "…", the plot keeps its height and the explanation stays one hover
away. ``text()`` is always the full text.
"""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtWidgets import QLabel

# A result panel shorter than this (a laptop's tab dock above the attention viewer) folds its labels.
COMPACT_HEIGHT = 380


class CompactLabel(QLabel):
    """A word-wrapped QLabel that :meth:`set_compact` folds to one line elided to its width."""

    def __init__(self, text: str = "", parent=None) -> None:
        super().__init__(parent)
        self._full = ""
        self._compact = False
        self.setWordWrap(True)
        self.setText(text)

    def setText(self, text: str) -> None:  # noqa: N802 - Qt override
        self._full = str(text)
        self._show()

    def text(self) -> str:
        return self._full

    def shown_text(self) -> str:
        """What is drawn now (the full text, or one line ending in "…" when compact and too long)."""
        return super().text()

    def is_compact(self) -> bool:
        return self._compact

    def set_compact(self, compact: bool) -> None:
        if compact != self._compact:
            self._compact = compact
            self.setWordWrap(not compact)
            self._show()
            self.updateGeometry()

    def _show(self) -> None:
        shown = self._full
        if self._compact:
            shown = self.fontMetrics().elidedText(self._full.replace("\n", " "), Qt.TextElideMode.ElideRight,
                                                  max(20, self.contentsRect().width()))
        self.setToolTip(self._full if shown != self._full else "")
        super().setText(shown)

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        if self._compact and event.size().width() != event.oldSize().width():
            self._show()

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt override
        if self._compact:
            return QSize(20, self.fontMetrics().height())
        return super().minimumSizeHint()

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override
        if self._compact:
            return QSize(super().sizeHint().width(), self.fontMetrics().height())
        return super().sizeHint()
