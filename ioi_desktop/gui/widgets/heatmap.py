"""A labelled, clickable heatmap for layer x head and layer x position grids.

Built the way pyqtgraph's MatrixDisplay example builds one: an ``ImageItem``
whose pixel (row, col) is drawn centred on (col, row) by shifting the image
rectangle by -0.5, ``invertY`` so row 0 is at the top (layer 0 first, as in
TransformerLens's plots), labelled ticks on both axes and a ``ColorBarItem``.
Levels are always passed explicitly: symmetric around 0 with a diverging map
for signed scores, from 0 with a sequential map otherwise. Cells not computed
yet are NaN and drawn transparent, so a grid can fill in row by row.

The widget only indexes and formats numbers; it never computes them.
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter
from PySide6.QtWidgets import QGraphicsItem, QGraphicsRectItem

from ioi_desktop.gui.widgets.colors import (
    DIVERGING,
    ROLE_MARKERS,
    SEQUENTIAL,
    configure_pyqtgraph,
    sequential_levels,
    symmetric_levels,
    text_color_on,
    theme_colors,
)
from ioi_desktop.gui.widgets.plot_fit import span_title

# The theme was chosen before pyqtgraph was imported: apply it to pyqtgraph's defaults now.
configure_pyqtgraph()

HoverText = Callable[[int, int, float], str]


def tick_labels(labels: Sequence[str], max_ticks: int = 40) -> list[tuple[int, str]]:
    """(index, label) ticks, thinned to at most ``max_ticks`` so labels stay readable."""
    step = max(1, int(np.ceil(len(labels) / max_ticks)))
    return [(i, str(label)) for i, label in enumerate(labels) if i % step == 0]


def fit_axis(axis: pg.AxisItem, labels: Sequence[str] | None = None, sample: str = "-0.00") -> None:
    """Reserve room for the tick labels an axis will show, so none is dropped or clipped.

    pyqtgraph widens an axis only after a first paint reveals a long label and
    hides labels that do not fit meanwhile (screenshots and exports then miss
    them); measuring the labels up front avoids that. Multi-line labels count
    their lines for a horizontal axis.
    """
    metrics = QFontMetrics(axis.style["tickFont"] or QFont())
    texts = [str(label) for label in labels] if labels else [sample]
    if axis.orientation in ("left", "right"):
        widest = max(metrics.horizontalAdvance(line) for text in texts for line in text.split("\n"))
        if axis.fixedWidth is not None:
            # A colour bar's axis has a fixed width that ignores the text style.
            axis.setWidth(widest + 6 + axis.style["tickTextOffset"][0] + max(0, axis.style["tickLength"]))
        else:
            axis.setStyle(autoExpandTextSpace=False, tickTextWidth=widest + 4)
    else:
        lines = max(text.count("\n") + 1 for text in texts)
        axis.setStyle(autoExpandTextSpace=False, tickTextHeight=lines * metrics.height() + 2)


class RotatableAxis(pg.AxisItem):
    """An axis whose tick labels can be drawn rotated (``rotation`` degrees, e.g. -45 for long key labels).

    pyqtgraph lays tick labels out horizontally only; this draws the axis and
    ticks as usual, then each label rotated about the top of its tick, so every
    column of a long prompt can be labelled without overlapping.
    """

    def __init__(self, orientation: str, **kwargs) -> None:
        super().__init__(orientation, **kwargs)
        self.rotation = 0

    def set_rotation(self, degrees: int, labels: Sequence[str] = ()) -> None:
        self.rotation = degrees
        if degrees:
            metrics = QFontMetrics(self.style["tickFont"] or QFont())
            widest = max((metrics.horizontalAdvance(str(label)) for label in labels), default=20)
            self.setStyle(autoExpandTextSpace=False,
                          tickTextHeight=int(widest * abs(np.sin(np.radians(degrees)))) + metrics.height() + 4)
        self.picture = None
        self.update()

    def drawPicture(self, p, axisSpec, tickSpecs, textSpecs):  # noqa: N802 - pyqtgraph override
        if not self.rotation:
            return super().drawPicture(p, axisSpec, tickSpecs, textSpecs)
        super().drawPicture(p, axisSpec, tickSpecs, [])
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        if self.style["tickFont"] is not None:
            p.setFont(self.style["tickFont"])
        p.setPen(self.textPen())
        metrics = QFontMetrics(p.font())
        for rect, _flags, text in textSpecs:
            width = metrics.horizontalAdvance(text) + 2
            p.save()
            p.translate(rect.center().x(), rect.top() + 2)
            p.rotate(self.rotation)
            p.drawText(QRectF(-width, -metrics.height() / 2, width, metrics.height()),
                       int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter), text)
            p.restore()


def short_token(token: str, width: int = 6) -> str:
    """A token shortened for an axis tick or a cell: trimmed, special tokens named, cut to ``width``."""
    token = str(token)
    if token.startswith("<|") and token.endswith("|>"):
        # "<|endoftext|>" as GPT-2's BOS would take three cells of room.
        return "BOS"
    shown = token.strip() or repr(token)
    return shown if len(shown) <= width else shown[: width - 1] + "…"


def set_legend_text_color(legend: pg.LegendItem, color: QColor) -> None:
    """Recolour a legend's labels, including those already added."""
    legend.setLabelTextColor(color)
    for _sample, label in legend.items:
        label.setAttr("color", color)
        label.setText(label.text)


def marker_size(symbol: str) -> int:
    """Pixel size of a marker; pyqtgraph's star fills less of its box than the other symbols."""
    return 15 if symbol == "star" else 11


def marker_styles(names: Iterable[str], descriptions: Mapping[str, str] | None = None) -> dict[str, tuple[str, QColor]]:
    """Category -> (pyqtgraph symbol, colour), in legend order: described categories first."""
    present = list(dict.fromkeys(names))
    order = [name for name in (descriptions or {}) if name in present]
    order += [name for name in present if name not in order]
    return {name: ROLE_MARKERS[i % len(ROLE_MARKERS)] for i, name in enumerate(order)}


class CellTextItem(QGraphicsItem):
    """Short strings written in the cells of a grid, drawn by one item.

    One ``pg.TextItem`` per cell costs a QGraphicsItem, a document layout and
    a scene update each: a 13 x 15 logit-lens grid took most of a second to
    rewrite, and it is rewritten for every streamed row. This item keeps the
    strings and their colours in lists and paints them all at once, at a fixed
    point size whatever the zoom (it maps each cell centre to device pixels and
    draws there without the view's scaling), so an update is a list swap and
    one repaint.
    """

    def __init__(self) -> None:
        super().__init__()
        self._texts: list[list[str]] = []
        self._colors: list[list[QColor]] = []
        self._font = QFont()
        self.setZValue(10)

    def set_texts(self, texts: list[list[str]], font: QFont) -> None:
        self.prepareGeometryChange()
        self._texts = texts
        self._font = font
        self._colors = [[QColor(0, 0, 0)] * len(row) for row in texts]
        self.update()

    def set_colors(self, colors: list[list[QColor]]) -> None:
        self._colors = colors
        self.update()

    def texts(self) -> list[list[str]]:
        return self._texts

    def colors(self) -> list[list[QColor]]:
        return self._colors

    def boundingRect(self) -> QRectF:  # noqa: N802 - Qt override
        n_rows = len(self._texts)
        n_cols = max((len(row) for row in self._texts), default=0)
        # Text may reach past its cell; half a cell of slack keeps the edges repainted.
        return QRectF(-1.0, -1.0, n_cols + 1.0, n_rows + 1.0)

    def paint(self, painter: QPainter, option, widget=None) -> None:
        if not self._texts:
            return
        transform = painter.transform()
        cell = transform.map(QPointF(1.0, 1.0)) - transform.map(QPointF(0.0, 0.0))
        width, height = abs(cell.x()), abs(cell.y())
        painter.save()
        painter.resetTransform()
        flags = int(Qt.AlignmentFlag.AlignCenter) | int(Qt.TextFlag.TextDontClip)
        fonts = self._fonts_for(width - 2)
        for row, (texts, colors) in enumerate(zip(self._texts, self._colors)):
            for col, (text, color) in enumerate(zip(texts, colors)):
                if not text:
                    continue
                # The full token in the cell's font, a smaller font when it does not fit, elided
                # only below 6 pt (the hover line and tooltip always give the whole token).
                font, metrics = fonts[-1]
                for candidate, candidate_metrics in fonts:
                    if candidate_metrics.horizontalAdvance(text) <= width - 2:
                        font, metrics = candidate, candidate_metrics
                        break
                shown = metrics.elidedText(text, Qt.TextElideMode.ElideRight, max(4, int(width - 2)))
                centre = transform.map(QPointF(col, row))
                painter.setFont(font)
                painter.setPen(color)
                painter.drawText(QRectF(centre.x() - width / 2, centre.y() - height / 2, width, height), flags, shown)
        painter.restore()

    def _fonts_for(self, _width: float) -> list[tuple[QFont, QFontMetrics]]:
        size = max(6, self._font.pointSize())
        fonts = []
        for point in range(size, 5, -1):
            font = QFont(self._font)
            font.setPointSize(point)
            fonts.append((font, QFontMetrics(font)))
        return fonts

    def elided_count(self, cell_width: float) -> int:
        """How many cell strings would be elided in cells ``cell_width`` device pixels wide."""
        _font, metrics = self._fonts_for(cell_width)[-1]
        return sum(metrics.horizontalAdvance(text) > cell_width - 2 for row in self._texts for text in row if text)


class ThemedPlot(pg.GraphicsLayoutWidget):
    """A plot widget that follows the light/dark palette.

    Subclasses build ``plot`` (a PlotItem), ``hover_label`` and ``legend``;
    ``_apply_theme`` recolours them and returns the foreground colour so a
    subclass can recolour its own items after calling it.
    """

    def changeEvent(self, event) -> None:  # noqa: N802 - Qt override
        # Qt sends palette changes during construction too, before the plot exists.
        if event.type() == QEvent.Type.PaletteChange and hasattr(self, "plot"):
            self._apply_theme()
        super().changeEvent(event)

    # The hover read-out is a line under the plot (row 2 of the layout) unless turned off, or folded into
    # the tooltip alone while the plot is compact (a short dock: the line's height goes to the plot).
    _hover_wanted = True
    _compact = False

    def set_hover_line(self, shown: bool) -> None:
        """Show the hover read-out as a line under the plot (the default) or only as the tooltip."""
        self._hover_wanted = shown
        self._place_hover_line()

    def set_compact(self, compact: bool) -> None:
        """Compact (a short dock): the hover read-out is only the tooltip."""
        self._compact = compact
        self._place_hover_line()

    def hover_line_shown(self) -> bool:
        return self.hover_label.parentItem() is not None

    def _place_hover_line(self) -> None:
        shown = self._hover_wanted and not self._compact
        if shown == self.hover_line_shown():
            return
        if shown:
            self.addItem(self.hover_label, row=2, col=0)
        else:
            self.removeItem(self.hover_label)

    def _apply_theme(self) -> QColor:
        background, foreground = theme_colors(self)
        self.setBackground(background)
        pen = pg.mkPen(foreground)
        for side in ("left", "bottom"):
            axis = self.plot.getAxis(side)
            axis.setPen(pen)
            axis.setTextPen(pen)
        self.plot.titleLabel.setAttr("color", foreground)
        self.plot.titleLabel.setText(self.plot.titleLabel.text)
        self.hover_label.setAttr("color", foreground)
        set_legend_text_color(self.legend, foreground)
        return foreground


class Heatmap(ThemedPlot):
    """A 2-D grid of values with labelled axes, a colour bar, hover read-out and cell clicks.

    ``cell_clicked(row, col)`` is emitted on a left click inside the grid.
    """

    cell_clicked = Signal(int, int)
    cell_ctrl_clicked = Signal(int, int)  # a left click with Ctrl (Cmd on macOS) held
    cell_menu_requested = Signal(int, int, object)  # a right click: row, col, global position (QPoint)

    def __init__(self, parent=None, *, title: str = "", row_title: str = "", col_title: str = "") -> None:
        super().__init__(parent)
        self.ci.setContentsMargins(4, 4, 4, 4)
        self._row_title = row_title
        self._col_title = col_title
        self._row_labels: list[str] = []
        self._col_labels: list[str] = []
        self._values = np.zeros((0, 0), dtype=np.float32)
        self._signed = True
        self._levels: tuple[float, float] | None = None
        self._fixed_levels: tuple[float, float] | None = None
        self._hover_text: HoverText | None = None
        self._value_format = "{:+.4g}"
        self._selected: tuple[int, int] | None = None
        self._last_mouse = None

        self.plot = self.addPlot(row=0, col=0, title=title or None,
                                 axisItems={"bottom": RotatableAxis("bottom")})
        self._rotate_cols: bool | str = False
        self._rotated_now: bool | None = None
        self.plot.invertY(True)
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.setMenuEnabled(False)
        self.plot.hideButtons()
        self.plot.setLabel("left", row_title)
        self.plot.setLabel("bottom", col_title)
        for side in ("left", "bottom"):
            self.plot.getAxis(side).setStyle(tickLength=0)
        # The first and last position labels may reach a little past the grid's edge.
        self.plot.getAxis("bottom").setStyle(hideOverlappingLabels=False)

        # Thin the tick labels when the plot area itself changes size: the widget's own
        # resizeEvent comes before the layout has resized the view, which then still
        # has its old height and the row labels of a short grid overlap.
        self.plot.vb.sigResized.connect(lambda _view: self._update_ticks())
        self.image = pg.ImageItem(axisOrder="row-major")
        self.plot.addItem(self.image)
        self.cell_text_item = CellTextItem()
        self.plot.addItem(self.cell_text_item)
        self.colorbar = pg.ColorBarItem(values=(-1.0, 1.0), colorMap=DIVERGING, interactive=False,
                                        width=14, colorMapMenu=False)
        self.colorbar.setImageItem(self.image, insert_in=self.plot)
        # The title over the whole plot (axes and colour bar too), so it does not widen the plot's minimum.
        span_title(self.plot)
        # Scores are plain numbers; an SI prefix ("x1e-06") on the scale only confuses.
        self.colorbar.axis.enableAutoSIPrefix(False)

        # Two nested rectangles (dark outside, light inside) stay visible on any cell colour.
        self._outline_outer = QGraphicsRectItem()
        self._outline_outer.setPen(pg.mkPen(QColor(0, 0, 0), width=4, cosmetic=True))
        self._outline_inner = QGraphicsRectItem()
        self._outline_inner.setPen(pg.mkPen(QColor(255, 255, 255), width=2, cosmetic=True))
        for item in (self._outline_outer, self._outline_inner):
            item.setZValue(20)
            item.setVisible(False)
            self.plot.addItem(item)

        self._markers = pg.ScatterPlotItem(pxMode=True)
        self._marker_key: tuple | None = None  # what ``set_markers`` was last given
        self._legend_wanted = False
        self._markers.setZValue(15)
        self.plot.addItem(self._markers)
        self.legend = pg.LegendItem(colCount=3, labelTextSize="8pt", frame=False)
        self.addItem(self.legend, row=1, col=0)
        self._set_legend_visible(False)

        self.hover_label = pg.LabelItem(justify="left", size="9pt")
        self.addItem(self.hover_label, row=2, col=0)
        self.hover_label.setText(" ")

        self.scene().sigMouseMoved.connect(self._on_mouse_moved)
        self.scene().sigMouseClicked.connect(self._on_mouse_clicked)
        self._apply_theme()

    def set_rotated_col_labels(self, rotated: bool | str) -> None:
        """Draw the column labels rotated (long token labels, every column labelled): True always,
        "auto" only when they would not all fit side by side, False never."""
        self._rotate_cols = rotated
        self._rotated_now = None
        if not rotated:
            self.plot.getAxis("bottom").set_rotation(0)

    def set_square_cells(self, square: bool) -> None:
        """Keep every cell square whatever the widget's shape (attention patterns)."""
        self.plot.vb.setAspectLocked(square, ratio=1.0)

    def set_titles(self, title: str, row_title: str, col_title: str) -> None:
        """Change the plot title and the axis titles (also used in the hover read-out)."""
        self._row_title, self._col_title = row_title, col_title
        self.plot.setTitle(title or None)
        self.plot.setLabel("left", row_title)
        self.plot.setLabel("bottom", col_title)
        self._apply_theme()

    # ----------------------------------------------------------------- data
    def set_data(
        self,
        values: np.ndarray,
        row_labels: Sequence[str] | None = None,
        col_labels: Sequence[str] | None = None,
        *,
        signed: bool = True,
        levels: tuple[float, float] | None = None,
        value_format: str = "{:+.4g}",
    ) -> None:
        """Show ``values[row, col]`` (NaN = not computed yet).

        ``signed`` picks the diverging map with symmetric levels; ``levels``
        fixes the colour range (e.g. (0, 1) for probabilities, or shared
        levels for two grids meant to be compared).
        """
        values = np.asarray(values, dtype=np.float32)
        if values.ndim != 2:
            raise ValueError(f"a heatmap needs a 2-D array, got shape {values.shape}")
        # A copy: streamed rows hand in arrays the workbench keeps filling in (``set_row`` writes here too).
        self._values = np.array(values, dtype=np.float32, order="C", copy=True)
        self._signed = signed
        self._fixed_levels = levels
        self._value_format = value_format
        n_rows, n_cols = values.shape
        self._row_labels = [str(x) for x in row_labels] if row_labels is not None else [str(i) for i in range(n_rows)]
        self._col_labels = [str(x) for x in col_labels] if col_labels is not None else [str(i) for i in range(n_cols)]
        fit_axis(self.plot.getAxis("left"), self._row_labels or None)
        self._rotated_now = None
        self._update_ticks()
        cmap = DIVERGING if signed else SEQUENTIAL
        if self.colorbar.colorMap() is not cmap:  # rebuilding the colour bar's lookup table is not free
            self.colorbar.setColorMap(cmap)
        self._render()
        if values.size:
            self.plot.setXRange(-0.5, n_cols - 0.5, padding=0)
            self.plot.setYRange(-0.5, n_rows - 0.5, padding=0)
        self.refresh_hover()

    def refresh_hover(self) -> None:
        """Recompute the hover line for the grid shown now (a new grid, prompt or mode), never keeping
        the previous grid's read-out: the cell under the mouse is described again, else the line is blank."""
        cell = self.cell_at(self._last_mouse) if self._last_mouse is not None and self._values.size else None
        text = self.describe_cell(*cell) if cell is not None else " "
        self.hover_label.setText(text)
        self.setToolTip("" if cell is None else text)

    def _update_ticks(self) -> None:
        """Label as many rows/columns as fit without overlapping (every k-th when crowded)."""
        metrics = QFontMetrics(QFont())
        label_width = max((metrics.horizontalAdvance(line) for label in self._col_labels
                           for line in label.split("\n")), default=0) + 8
        label_height = metrics.height() + 2
        view = self.plot.vb.boundingRect()
        # Before the first layout the view has no size yet; assume the usual one.
        laid_out = view.width() > 1 and view.height() > 1
        width = view.width() if laid_out else 400.0
        height = view.height() if laid_out else 300.0
        rotate = self._rotate_cols is True or (self._rotate_cols == "auto" and laid_out
                                                and width // label_width < len(self._col_labels))
        columns = [label.replace("\n", " ") for label in self._col_labels] if rotate else self._col_labels
        if rotate != self._rotated_now:
            self._rotated_now = rotate
            axis = self.plot.getAxis("bottom")
            if rotate:
                axis.set_rotation(-50, columns)
            else:
                axis.set_rotation(0)
                fit_axis(axis, self._col_labels or None)
        if rotate:
            # Rotated labels take only about a line's height of the axis's length each.
            label_width = metrics.height() * 0.85 + 1
        self._ticks = {"bottom": tick_labels(columns, max(1, int(width // label_width))),
                       "left": tick_labels(self._row_labels, max(1, int(height // label_height)))}
        self.plot.getAxis("bottom").setTicks([self._ticks["bottom"]])
        self.plot.getAxis("left").setTicks([self._ticks["left"]])

    def shown_ticks(self, side: str) -> list[tuple[int, str]]:
        """The (index, label) ticks drawn now on the "bottom" (columns) or "left" (rows) axis."""
        return list(getattr(self, "_ticks", {}).get(side, []))

    def set_row(self, row: int, values: np.ndarray) -> None:
        """Fill one row (streamed partial results); levels follow what is known so far."""
        self._values[row] = np.asarray(values, dtype=np.float32)
        self._render()

    def values(self) -> np.ndarray:
        return self._values

    def levels(self) -> tuple[float, float] | None:
        return self._levels

    def clear_data(self) -> None:
        self.set_data(np.zeros((0, 0), dtype=np.float32), [], [])
        self.set_cell_text(None)
        self.set_selected(None)
        self.hover_label.setText(" ")

    def _render(self) -> None:
        values = self._values
        if self._fixed_levels is not None:
            levels = self._fixed_levels
        elif self._signed:
            levels = symmetric_levels(values)
        else:
            levels = sequential_levels(values)
        self._levels = levels
        fit_axis(self.colorbar.axis, [f"{levels[0]:.2g}", f"{levels[1]:.2g}", "-0.00"])
        n_rows, n_cols = values.shape
        self.colorbar.setLevels(levels)
        if values.size == 0:
            self.image.clear()
            return
        self.image.setImage(values, levels=levels, autoLevels=False)
        self.image.setRect(QRectF(-0.5, -0.5, n_cols, n_rows))
        self._update_text_colors()

    # -------------------------------------------------------- decorations
    def set_hover_text(self, formatter: HoverText | None) -> None:
        """Replace the default hover read-out with ``formatter(row, col, value)``."""
        self._hover_text = formatter
        self.refresh_hover()

    def set_selected(self, cell: tuple[int, int] | None) -> None:
        """Outline one cell (row, col), or none."""
        self._selected = cell
        visible = cell is not None and 0 <= cell[0] < self._values.shape[0] and 0 <= cell[1] < self._values.shape[1]
        for item in (self._outline_outer, self._outline_inner):
            item.setVisible(visible)
        if visible:
            row, col = cell
            self._outline_outer.setRect(QRectF(col - 0.5, row - 0.5, 1, 1))
            self._outline_inner.setRect(QRectF(col - 0.44, row - 0.44, 0.88, 0.88))

    def selected(self) -> tuple[int, int] | None:
        return self._selected

    @property
    def outline(self) -> QRectF | None:
        """The outlined cell's rectangle in plot coordinates (x = column, y = row); None when none is outlined."""
        return QRectF(self._outline_outer.rect()) if self._outline_outer.isVisible() else None

    def set_cell_text(self, texts: np.ndarray | Sequence[Sequence[str]] | None, font_size: int = 8) -> None:
        """Write a short string in each cell (e.g. the logit lens's top token); None removes them."""
        font = QFont()
        font.setPointSize(font_size)
        rows = [] if texts is None else [[str(text) if text else "" for text in row] for row in texts]
        self.cell_text_item.set_texts(rows, font)
        self._update_text_colors()

    def cell_texts(self) -> list[str]:
        """The non-empty cell strings, row by row."""
        return [text for row in self.cell_text_item.texts() for text in row if text]

    def cell_text_colors(self) -> list[QColor]:
        """The colours of the non-empty cell strings, in the order of :meth:`cell_texts`."""
        return [color for texts, colors in zip(self.cell_text_item.texts(), self.cell_text_item.colors())
                for text, color in zip(texts, colors) if text]

    def _update_text_colors(self) -> None:
        texts = self.cell_text_item.texts()
        if not texts or self._levels is None:
            return
        low, high = self._levels
        n_rows, n_cols = self._values.shape
        values = np.full((len(texts), max(len(row) for row in texts)), np.nan, dtype=np.float64)
        values[: min(n_rows, values.shape[0]), : min(n_cols, values.shape[1])] = \
            self._values[: values.shape[0], : values.shape[1]]
        fraction = np.clip((values - low) / (high - low), 0.0, 1.0) if high > low else np.full(values.shape, 0.5)
        # Black or white text, whichever reads better on the cell's colour (one lookup per distinct shade).
        cmap = self.colorbar.colorMap()
        shades = np.round(np.nan_to_num(fraction, nan=-1.0) * 255).astype(int)
        distinct = np.unique(shades[shades >= 0])
        # The colour map looked up once for all distinct shades (not once per shade).
        mapped = cmap.map(distinct / 255.0, mode=pg.ColorMap.QCOLOR) if distinct.size else []
        on_shade = {shade: text_color_on(color) for shade, color in zip(distinct.tolist(), mapped)}
        not_computed = theme_colors(self)[1]
        rows = shades.tolist()
        self.cell_text_item.set_colors([[on_shade.get(rows[r][c], not_computed) if rows[r][c] >= 0 else not_computed
                                         for c in range(len(row))] for r, row in enumerate(texts)])

    def set_markers(self, cells: Mapping[tuple[int, int], str], descriptions: Mapping[str, str] | None = None,
                    show_legend: bool = True) -> None:
        """Mark cells with a symbol per category (known head roles), with a legend below unless told not to.

        ``cells`` maps (row, col) to a category name; categories get symbols in
        the order of ``descriptions`` (then first appearance), see :func:`marker_styles`.
        The same markers again change nothing (a panel redraws its roles overlay with
        each draw), and the legend is built only when it is shown: its labels are
        graphics widgets, the costliest part of drawing a head map.
        """
        key = (tuple(sorted(cells.items())), tuple((descriptions or {}).items()), bool(show_legend))
        if key == self._marker_key:
            return
        self._marker_key = key
        self._markers.clear()
        self.legend.clear()
        self._markers.setVisible(True)
        if not cells:
            self._legend_wanted = False
            self._set_legend_visible(False)
            return
        style = marker_styles(cells.values(), descriptions)
        outline = pg.mkPen(QColor(0, 0, 0), width=1)
        brushes = {name: pg.mkBrush(color) for name, (_symbol, color) in style.items()}
        placed = list(cells.items())
        # Top-right corner of the cell, so the cell colour stays visible; one call with arrays.
        self._markers.setData(
            x=np.array([col + 0.27 for (_row, col), _name in placed], dtype=np.float64),
            y=np.array([row - 0.27 for (row, _col), _name in placed], dtype=np.float64),
            symbol=[style[name][0] for _cell, name in placed],
            size=[marker_size(style[name][0]) for _cell, name in placed],
            brush=[brushes[name] for _cell, name in placed], pen=outline,
            data=[name for _cell, name in placed])
        self._legend_wanted = bool(show_legend)
        if show_legend:
            for name, (symbol, color) in style.items():
                sample = pg.ScatterPlotItem(symbol=symbol, size=marker_size(symbol), brush=brushes[name], pen=outline)
                self.legend.addItem(sample, name)
            set_legend_text_color(self.legend, theme_colors(self)[1])
        self._set_legend_visible(show_legend)

    def show_markers(self, shown: bool) -> None:
        """Hide the markers and their legend (an exported figure without them) or show them again,
        without rebuilding them."""
        self._markers.setVisible(shown)
        self._set_legend_visible(shown and self._legend_wanted)

    def _set_legend_visible(self, visible: bool) -> None:
        # A hidden item still takes its row in a QGraphicsGridLayout; collapse it too.
        self.legend.setVisible(visible)
        limit = 16777215 if visible else 0
        self.legend.setMaximumHeight(limit)
        self.legend.setMaximumWidth(limit)

    def marker_count(self) -> int:
        """How many cells are marked and shown (hidden markers, ``show_markers(False)``, count none)."""
        return len(self._markers.points()) if self._markers.isVisible() else 0

    # -------------------------------------------------------------- events
    def cell_at(self, scene_pos) -> tuple[int, int] | None:
        """The (row, col) under a scene position, or None outside the grid."""
        if not self.plot.vb.sceneBoundingRect().contains(scene_pos):
            return None
        point = self.plot.vb.mapSceneToView(scene_pos)
        col = int(np.floor(point.x() + 0.5))
        row = int(np.floor(point.y() + 0.5))
        n_rows, n_cols = self._values.shape
        if 0 <= row < n_rows and 0 <= col < n_cols:
            return row, col
        return None

    def format_value(self, value: float) -> str:
        return self._value_format.format(value) if np.isfinite(value) else "not computed yet"

    def row_label(self, row: int) -> str:
        return self._row_labels[row].replace("\n", " ")

    def col_label(self, col: int) -> str:
        return self._col_labels[col].replace("\n", " ")

    def describe_cell(self, row: int, col: int) -> str:
        value = float(self._values[row, col])
        if self._hover_text is not None:
            return self._hover_text(row, col, value)
        return (f"{self._row_title} {self.row_label(row)}, {self._col_title} {self.col_label(col)}: "
                f"{self.format_value(value)}")

    def _on_mouse_moved(self, scene_pos) -> None:
        self._last_mouse = scene_pos
        cell = self.cell_at(scene_pos)
        text = self.describe_cell(*cell) if cell is not None else " "
        self.hover_label.setText(text)
        self.setToolTip("" if cell is None else text)

    def _on_mouse_clicked(self, event) -> None:
        if event.button() == Qt.MouseButton.RightButton:
            cell = self.cell_at(event.scenePos())
            if cell is not None:
                self.cell_menu_requested.emit(*cell, event.screenPos().toPoint())
            return
        if event.button() != Qt.MouseButton.LeftButton:
            return
        cell = self.cell_at(event.scenePos())
        if cell is None:
            return
        if event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            self.cell_ctrl_clicked.emit(*cell)
        else:
            self.cell_clicked.emit(*cell)

    def _apply_theme(self) -> None:
        foreground = super()._apply_theme()
        pen = pg.mkPen(foreground)
        self.colorbar.axis.setPen(pen)
        self.colorbar.axis.setTextPen(pen)
        return foreground
