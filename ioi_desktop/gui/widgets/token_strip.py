"""A row of token boxes: where the tokenizer cut the prompt, and what each position is.

Each token is drawn as a box (spaces shown as ``·`` so boundaries are visible)
with its position under it. Named positions (IO, S1, S2, END, ...) get a
coloured border and their name above the box. Optional per-token weights
(e.g. one query row of an attention pattern) shade the boxes and print the
weight, so the strongest keys stand out. Boxes wrap onto more lines when the
widget is narrow. Clicking a box emits ``token_clicked(position)``.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from PySide6.QtCore import QEvent, QObject, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter, QPalette, QPen
from PySide6.QtWidgets import QFrame, QScrollArea, QSizePolicy, QWidget

from ioi_desktop.gui.widgets.colors import OTHER_ROLE_COLOR, ROLE_COLORS

_PAD_X = 6
_GAP = 4
_ROLE_H = 14
_POS_H = 14
_BOX_H = 24
_MAX_CHARS = 16


def display_token(token: str) -> str:
    """A token as shown in a box: spaces and newlines made visible, long tokens cut."""
    shown = token.replace(" ", "·").replace("\n", "↵").replace("\t", "⇥")
    if not shown:
        shown = "∅"
    return shown if len(shown) <= _MAX_CHARS else shown[: _MAX_CHARS - 1] + "…"


class TokenStrip(QWidget):
    """Token boxes with positions, role highlights, optional weights; clickable."""

    token_clicked = Signal(int)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._tokens: list[str] = []
        self._roles: dict[int, list[str]] = {}
        self._weights: np.ndarray | None = None
        self._weight_label = ""
        self._full_scale: float | None = None
        self._selected: int | None = None
        self._boxes: list[QRectF] = []
        self._laid_out_width = -1
        # Layouts by width and fonts: the layout system asks for the size hints many times per relayout.
        self._layouts: dict[int, tuple[list[QRectF], int]] = {}
        self._fonts: dict[tuple[bool, bool], QFont] = {}
        self.setMouseTracking(True)
        size_policy = QSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Minimum)
        size_policy.setHeightForWidth(True)
        self.setSizePolicy(size_policy)

    # ------------------------------------------------------------------ data
    def set_tokens(self, tokens: Sequence[str], roles: Mapping[str, int] | None = None) -> None:
        """Show ``tokens``; ``roles`` maps a role name to its position (negative = absent)."""
        before = self._geometry()
        self._tokens = [str(t) for t in tokens]
        self._roles = {}
        for name, position in (roles or {}).items():
            if position is not None and 0 <= int(position) < len(self._tokens):
                self._roles.setdefault(int(position), []).append(name)
        self._weights = None
        self._selected = None if self._selected is None or self._selected >= len(self._tokens) else self._selected
        self._relayout(before)

    def set_weights(self, weights: np.ndarray | None, label: str = "", full_scale: float | None = None) -> None:
        """Shade each token by its weight (None removes the shading).

        ``full_scale`` is the weight drawn fully shaded: 1.0 for attention
        weights, so near-uniform attention stays pale; by default the largest weight.
        """
        before = self._geometry()
        if weights is not None:
            weights = np.asarray(weights, dtype=np.float32)[: len(self._tokens)]
        self._weights = weights
        self._weight_label = label
        self._full_scale = full_scale
        self._relayout(before)

    def set_selected(self, position: int | None) -> None:
        self._selected = position
        self.update()

    def weights(self) -> np.ndarray | None:
        return None if self._weights is None else self._weights.copy()

    def tokens(self) -> list[str]:
        return list(self._tokens)

    def roles_at(self, position: int) -> list[str]:
        return list(self._roles.get(position, []))

    def strongest(self, k: int = 3) -> list[int]:
        """Positions of the ``k`` largest weights, largest first."""
        if self._weights is None or not len(self._weights):
            return []
        return [int(i) for i in np.argsort(-self._weights, kind="stable")[:k]]

    def box_rect(self, position: int) -> QRectF:
        self._ensure_layout()
        return self._boxes[position]

    # ---------------------------------------------------------------- layout
    def _font(self, bold: bool = False, small: bool = False) -> QFont:
        font = self._fonts.get((bold, small))
        if font is None:
            font = QFont(self.font())
            if small:
                font.setPointSizeF(max(6.5, font.pointSizeF() * 0.8))
            font.setBold(bold)
            self._fonts[(bold, small)] = font
        return font

    def _layout(self, width: int) -> tuple[list[QRectF], int]:
        """(token boxes, height) at ``width``, laid out once per width for the tokens shown."""
        found = self._layouts.get(width)
        if found is None:
            if len(self._layouts) > 16:
                self._layouts.clear()
            found = self._layouts[width] = self._lay_out(width)
        return found

    def _lay_out(self, width: int) -> tuple[list[QRectF], int]:
        metrics = QFontMetrics(self._font(bold=True))
        small = QFontMetrics(self._font(small=True))
        line_h = _ROLE_H + _BOX_H + _POS_H + _GAP
        boxes: list[QRectF] = []
        x, y = 0.0, 0.0
        for position, token in enumerate(self._tokens):
            under = self._under_text(position)
            box_w = max(metrics.horizontalAdvance(display_token(token)), small.horizontalAdvance(under),
                        small.horizontalAdvance("/".join(self._roles.get(position, [])))) + 2 * _PAD_X
            if x > 0 and x + box_w > width:
                x, y = 0.0, y + line_h
            boxes.append(QRectF(x, y + _ROLE_H, box_w, _BOX_H))
            x += box_w + _GAP
        height = int(y + line_h) if self._tokens else _BOX_H
        return boxes, height

    def _under_text(self, position: int) -> str:
        if self._weights is not None and position < len(self._weights):
            return f"{position} · {self._weights[position]:.2f}"
        return str(position)

    def _ensure_layout(self) -> None:
        if self._laid_out_width != self.width():
            self._boxes, _ = self._layout(max(1, self.width()))
            self._laid_out_width = self.width()

    def _geometry(self) -> tuple[QSize, int]:
        """What the layout system asks of the strip: its size hint and its height at its width."""
        return self.sizeHint(), self.heightForWidth(max(1, self.width()))

    def _relayout(self, before: tuple[QSize, int] | None = None) -> None:
        """New contents: lay them out again, and ask the window to relayout only when the strip's size
        hints changed (another prompt of the same shape repaints the strip alone)."""
        self._laid_out_width = -1
        self._layouts.clear()
        if before is None or self._geometry() != before:
            self.updateGeometry()
        self.update()

    def changeEvent(self, event) -> None:  # noqa: N802 - Qt override
        if event.type() == QEvent.Type.FontChange:
            self._fonts.clear()
            self._relayout()
        super().changeEvent(event)

    def hasHeightForWidth(self) -> bool:  # noqa: N802 - Qt override
        return True

    def heightForWidth(self, width: int) -> int:  # noqa: N802 - Qt override
        return self._layout(max(1, width))[1]

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override
        boxes, height = self._layout(10_000)
        width = int(boxes[-1].right()) + 1 if boxes else 100
        return QSize(min(width, 900), height)

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt override
        return QSize(60, self.heightForWidth(max(60, self.width())))

    # --------------------------------------------------------------- painting
    def paintEvent(self, event) -> None:  # noqa: N802 - Qt override
        self._ensure_layout()
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        palette = self.palette()
        text_color = palette.color(QPalette.ColorRole.Text)
        base = palette.color(QPalette.ColorRole.Base)
        muted = palette.color(QPalette.ColorRole.PlaceholderText)
        peak = float(self._weights.max()) if self._weights is not None and len(self._weights) else 0.0
        scale = self._full_scale if self._full_scale else peak
        strongest = set(self.strongest(3)) if peak > 0 else set()
        for position, (token, box) in enumerate(zip(self._tokens, self._boxes)):
            roles = self._roles.get(position, [])
            role_color = ROLE_COLORS.get(roles[0], OTHER_ROLE_COLOR) if roles else None
            fill = QColor(base)
            if peak > 0 and position < len(self._weights):
                # Shade toward a fixed blue by weight relative to the full-scale weight.
                share = float(np.clip(self._weights[position] / scale, 0.0, 1.0))
                fill = QColor.fromRgbF(
                    base.redF() + (0.13 - base.redF()) * share,
                    base.greenF() + (0.40 - base.greenF()) * share,
                    base.blueF() + (0.67 - base.blueF()) * share,
                )
            painter.setBrush(fill)
            border = role_color if role_color is not None else muted
            width = 2.5 if role_color is not None or position in strongest else 1.0
            if position in strongest and role_color is None:
                border = QColor(33, 102, 172)
            painter.setPen(QPen(border, width))
            painter.drawRoundedRect(box, 4, 4)
            if position == self._selected:
                painter.setPen(QPen(text_color, 1.5, Qt.PenStyle.DashLine))
                painter.setBrush(Qt.BrushStyle.NoBrush)
                painter.drawRoundedRect(box.adjusted(-2.5, -2.5, 2.5, 2.5), 5, 5)
            luminance = 0.2126 * fill.redF() + 0.7152 * fill.greenF() + 0.0722 * fill.blueF()
            painter.setPen(QColor(0, 0, 0) if luminance > 0.5 else QColor(255, 255, 255))
            painter.setFont(self._font(bold=True))
            painter.drawText(box, Qt.AlignmentFlag.AlignCenter, display_token(token))
            painter.setFont(self._font(small=True))
            if roles:
                painter.setPen(role_color)
                painter.drawText(QRectF(box.left(), box.top() - _ROLE_H, box.width(), _ROLE_H),
                                 Qt.AlignmentFlag.AlignCenter, "/".join(roles))
            painter.setPen(text_color if position in strongest else muted)
            painter.drawText(QRectF(box.left(), box.bottom(), box.width(), _POS_H),
                             Qt.AlignmentFlag.AlignCenter, self._under_text(position))
        painter.end()

    def position_at(self, point) -> int | None:
        self._ensure_layout()
        for position, box in enumerate(self._boxes):
            if box.contains(point):
                return position
        return None

    def mousePressEvent(self, event) -> None:  # noqa: N802 - Qt override
        if event.button() == Qt.MouseButton.LeftButton:
            position = self.position_at(event.position())
            if position is not None:
                self.token_clicked.emit(position)
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event) -> None:  # noqa: N802 - Qt override
        position = self.position_at(event.position())
        if position is None:
            self.setToolTip("")
        else:
            roles = ", ".join(self._roles.get(position, []))
            tip = f"position {position}: {self._tokens[position]!r}" + (f" ({roles})" if roles else "")
            if self._weights is not None and position < len(self._weights):
                tip += f"\n{self._weight_label or 'weight'}: {self._weights[position]:.3f}"
            self.setToolTip(tip)
        super().mouseMoveEvent(event)


class TokenStripScroller(QScrollArea):
    """A token strip that asks for room to show all its rows but can be squeezed to one and scrolled.

    A long prompt wraps onto several rows; as a plain widget the strip would
    make every row part of its panel's minimum height, and a window holding a
    few of them no longer fits a laptop screen.
    """

    def __init__(self, strip: TokenStrip, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.strip = strip
        self.setWidget(strip)
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        strip.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt override
        # New tokens change how tall the strip wants to be.
        if watched is self.strip and event.type() == QEvent.Type.LayoutRequest:
            self.updateGeometry()
        return super().eventFilter(watched, event)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override
        width = self.viewport().width() if self.viewport().width() > 60 else self.strip.sizeHint().width()
        return QSize(self.strip.sizeHint().width(), self.strip.heightForWidth(width))

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt override
        one_row = self.strip.heightForWidth(100_000)
        return QSize(60, min(one_row, self.sizeHint().height()))

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        if event.size().width() != event.oldSize().width():
            self.updateGeometry()
