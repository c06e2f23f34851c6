"""Saving what a panel shows: figures as PNG and SVG, numbers as CSV.

Grids (heatmaps) are exported through ``core.figures``: a vector SVG written
without Qt (one rectangle per cell, titled with analysis, activation, model and
prompt set), rasterised here to PNG off-screen at a chosen DPI
(:func:`svg_to_png`, also run by ``ioi-desktop export`` in a child process).
Other plots (bars, scatter, the lens line, attention patterns, token strips)
are rendered from their widget, off-screen and scaled to the DPI
(:func:`render_widget_png`), and as SVG through Qt's ``QSvgGenerator``
(:func:`export_svg`); pyqtgraph's own ``SVGExporter`` cannot parse the paths
Qt 6.12 writes, so it is not used. Widgets are painted on the GUI thread;
rasterising SVGs and encoding PNGs (:func:`svg_to_png`, :func:`write_png`) may
run in a worker thread (a QImage, a QPainter on it and a QSvgRenderer are
usable there). :func:`export_png` (a grab of the widget as
on screen) is kept for screenshots. All files are written atomically.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PySide6.QtCore import QBuffer, QIODevice, QPoint, QRect
from PySide6.QtGui import QPainter
from PySide6.QtSvg import QSvgGenerator
from PySide6.QtWidgets import QApplication, QWidget

from ioi_desktop.core.atomic import write_bytes_atomic, write_text_atomic
from ioi_desktop.core.errors import FileFormatError


def export_png(widget: QWidget, path: Path | str) -> Path:
    """Save the widget as it looks now as a PNG image."""
    # pyqtgraph widens axes for long tick labels on the first paint; let that settle.
    QApplication.processEvents()
    buffer = QBuffer()
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    if not widget.grab().save(buffer, "PNG"):
        raise FileFormatError(f"The figure could not be rendered to {path}.",
                              "Make sure the panel is visible and has a size, then export again.")
    return write_bytes_atomic(path, bytes(buffer.data()))


def export_svg(widget: QWidget, path: Path | str, title: str = "") -> Path:
    """Save the widget as an SVG figure of its current size."""
    return write_bytes_atomic(path, widget_svg(widget, title or Path(path).stem))


def widget_svg(widget: QWidget, title: str) -> bytes:
    """The widget drawn as an SVG figure of its current size (GUI thread: it paints the widget)."""
    QApplication.processEvents()
    buffer = QBuffer()
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    generator = QSvgGenerator()
    generator.setOutputDevice(buffer)
    generator.setSize(widget.size())
    generator.setViewBox(QRect(0, 0, widget.width(), widget.height()))
    generator.setTitle(title)
    painter = QPainter(generator)
    # QWidget's own render (not QGraphicsView's overload) so any widget, plot or not, draws itself.
    QWidget.render(widget, painter, QPoint(0, 0))
    painter.end()
    return bytes(buffer.data())


def _csv_text(rows: Iterable[Sequence[object]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for row in rows:
        writer.writerow(["" if v is None else (f"{v:.7g}" if isinstance(v, (float, np.floating)) else v) for v in row])
    return out.getvalue()


def export_grid_csv(path: Path | str, values: np.ndarray, row_labels: Sequence[str],
                    col_labels: Sequence[str], corner: str = "") -> Path:
    """A 2-D grid as CSV: a header of column labels, then one labelled line per row."""
    values = np.asarray(values)
    rows = [[corner, *col_labels]]
    rows += [[row_labels[i], *values[i].tolist()] for i in range(values.shape[0])]
    return write_text_atomic(path, _csv_text(rows))


def export_table_csv(path: Path | str, header: Sequence[str], rows: Iterable[Sequence[object]]) -> Path:
    """A table with a header line as CSV."""
    return write_text_atomic(path, _csv_text([list(header), *rows]))


def svg_to_png(svg: str | bytes, path: Path | str, dpi: int = 300) -> Path:
    """Rasterise an SVG figure (96 user units per inch) off-screen at ``dpi``; nothing on screen is grabbed.

    Needs a QGuiApplication (the CLI starts one on the offscreen platform).
    """
    from PySide6.QtCore import QByteArray, QRectF
    from PySide6.QtSvg import QSvgRenderer

    if not 30 <= int(dpi) <= 1200:
        raise FileFormatError(f"{dpi} DPI is not a usable resolution.", "Choose a DPI from 30 to 1200 (300 is usual).")
    data = svg.encode("utf-8") if isinstance(svg, str) else svg
    renderer = QSvgRenderer(QByteArray(data))
    if not renderer.isValid():
        raise FileFormatError(f"The figure for {path} is not valid SVG.", "Please report this bug.")
    size = renderer.defaultSize()
    image, painter = _canvas(size.width(), size.height(), dpi)
    painter.setRenderHint(QPainter.RenderHint.TextAntialiasing)
    renderer.render(painter, QRectF(0, 0, image.width(), image.height()))
    painter.end()
    return write_png(image, path)


def _canvas(width: float, height: float, dpi: int):
    """A white image of ``width`` x ``height`` (96-dpi units) at ``dpi``, and an antialiasing painter on it."""
    from PySide6.QtGui import QColor, QImage

    scale = int(dpi) / 96.0
    image = QImage(max(1, round(width * scale)), max(1, round(height * scale)), QImage.Format.Format_ARGB32)
    image.fill(QColor(255, 255, 255))
    dots_per_metre = round(int(dpi) / 0.0254)
    image.setDotsPerMeterX(dots_per_metre)
    image.setDotsPerMeterY(dots_per_metre)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    return image, painter


def write_png(image, path: Path | str) -> Path:
    """Encode a QImage as PNG and write it atomically; any thread (a QImage is not a QObject)."""
    buffer = QBuffer()
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    if not image.save(buffer, "PNG"):
        raise FileFormatError(f"The figure could not be rendered to {path}.", "Check the folder, then export again.")
    data = bytes(buffer.data())
    buffer.close()
    return write_bytes_atomic(path, data)


def render_widget_png(widget: QWidget, path: Path | str, dpi: int = 300) -> Path:
    """Render a (non-grid) plot widget off-screen at ``dpi``: its current layout, scaled, not a screen grab."""
    return write_png(render_widget_image(widget, dpi), path)


def render_widget_image(widget: QWidget, dpi: int = 300):
    """The widget rendered onto a QImage at ``dpi`` (GUI thread); :func:`write_png` encodes it anywhere."""
    QApplication.processEvents()
    image, painter = _canvas(widget.width(), widget.height(), dpi)
    painter.scale(int(dpi) / 96.0, int(dpi) / 96.0)
    QWidget.render(widget, painter, QPoint(0, 0))
    painter.end()
    return image


def svgs_to_pngs(folder: Path | str, dpi: int = 300) -> list[Path]:
    """A PNG beside every SVG figure in ``folder`` (recursively)."""
    return [svg_to_png(path.read_bytes(), path.with_suffix(".png"), dpi)
            for path in sorted(Path(folder).rglob("*.svg"))]


def ask_export_settings(parent: QWidget | None = None, dpi: int = 300, markers: bool = False):
    """A small dialog: PNG resolution and whether to draw known head roles on layer x head grids.

    Returns (dpi, markers), or None when cancelled.
    """
    from PySide6.QtWidgets import QCheckBox, QDialog, QDialogButtonBox, QFormLayout, QSpinBox

    dialog = QDialog(parent)
    dialog.setWindowTitle("Export figures and data")
    form = QFormLayout(dialog)
    dpi_box = QSpinBox()
    dpi_box.setRange(30, 1200)
    dpi_box.setSingleStep(50)
    dpi_box.setValue(dpi)
    dpi_box.setSuffix(" DPI")
    dpi_box.setToolTip("PNG resolution; SVGs are vector figures at any size")
    form.addRow("PNG resolution:", dpi_box)
    markers_box = QCheckBox("Mark known head roles on layer × head grids")
    markers_box.setChecked(markers)
    form.addRow(markers_box)
    buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
    buttons.accepted.connect(dialog.accept)
    buttons.rejected.connect(dialog.reject)
    form.addRow(buttons)
    if dialog.exec() != QDialog.DialogCode.Accepted:
        return None
    return dpi_box.value(), markers_box.isChecked()
