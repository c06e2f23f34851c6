"""Rasterise the SVG figures of an export folder to PNG, off-screen (``ioi-desktop export`` runs this).

The command-line tools import no Qt (tests/test_layering.py); ``ioi-desktop
export`` writes the vector SVGs and CSVs itself and starts this module in a
child process on Qt's offscreen platform for the PNGs::

    python -m ioi_desktop.gui.tools.render_figures FOLDER --dpi 300
"""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="render_figures", description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--dpi", type=int, default=300)
    args = parser.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtGui import QGuiApplication

    from ioi_desktop.core.errors import IOIError
    from ioi_desktop.gui.widgets.export import svgs_to_pngs

    app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])  # noqa: F841 - fonts need it
    try:
        written = svgs_to_pngs(args.folder, args.dpi)
    except IOIError as error:
        print(f"{error.message} {error.hint}", file=sys.stderr)
        return 1
    print(len(written))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
