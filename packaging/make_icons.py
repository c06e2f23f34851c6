"""Render resources/icons/ioi-desktop.svg to the PNG, ICO and ICNS files the installers need.

Run after editing the SVG: ``python packaging/make_icons.py`` (needs PySide6 and Pillow).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ICONS = Path(__file__).resolve().parents[1] / "resources" / "icons"
SIZES = (16, 24, 32, 48, 64, 128, 256, 512)


def render_pngs() -> dict[int, Path]:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])
    renderer = QSvgRenderer(str(ICONS / "ioi-desktop.svg"))
    written = {}
    for size in SIZES:
        image = QImage(size, size, QImage.Format_ARGB32)
        image.fill(Qt.transparent)
        painter = QPainter(image)
        painter.setRenderHint(QPainter.Antialiasing)
        renderer.render(painter)
        painter.end()
        path = ICONS / f"ioi-desktop-{size}.png"
        image.save(str(path))
        written[size] = path
    del app
    return written


def main() -> None:
    from PIL import Image

    pngs = render_pngs()
    (ICONS / "ioi-desktop.png").write_bytes(pngs[256].read_bytes())
    largest = Image.open(pngs[512])
    largest.save(ICONS / "ioi-desktop.ico", sizes=[(s, s) for s in (16, 24, 32, 48, 64, 128, 256)])
    largest.save(ICONS / "ioi-desktop.icns")
    for size, path in pngs.items():
        if size != 512:
            path.unlink()
    print("wrote", ", ".join(sorted(p.name for p in ICONS.iterdir())))


if __name__ == "__main__":
    main()
