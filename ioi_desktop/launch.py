"""Starting the desktop app: the window first, torch later.

``ioi-desktop`` (no subcommand) calls :func:`launch`. The window is created and
shown before torch or TransformerLens are imported; the model then loads in the
worker thread, so the user sees the app in about a second and can edit prompts
while the model loads.

``--smoke-test [--screenshot FILE.png]`` is the end-to-end check for CI, the
installer and support: it opens the real window (``QT_QPA_PLATFORM=offscreen``
works), loads the bundled model, runs every analysis on the notebook set
through the real worker thread, selects the strongest head of the patching
heatmap, optionally saves a screenshot of the whole window, prints a one-line
summary and exits 0. Any failure prints the reason on stderr and exits 1.

On Linux, before the QApplication exists, :mod:`ioi_desktop.gui.platform_check`
checks that Qt's X11 platform plugin can load; when system libraries are
missing it prints one message naming them and the install command, and
``launch`` returns 2 (a Wayland session falls back to Qt's wayland plugin).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

# Measured from here: the first line of ``ioi-desktop`` that is ours.
_STARTED = time.perf_counter()
SMOKE_TIMEOUT_S = 900


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="ioi-desktop", description="Open the IOI Desktop app.")
    parser.add_argument("--smoke-test", action="store_true",
                        help="open the window, load the bundled model, run every analysis, print a summary and exit")
    parser.add_argument("--screenshot", metavar="FILE.png", type=Path,
                        help="with --smoke-test: save a screenshot of the whole window")
    parser.add_argument("--timeout", type=float, default=SMOKE_TIMEOUT_S, metavar="SECONDS",
                        help=f"with --smoke-test: give up after this long (default {SMOKE_TIMEOUT_S})")
    args = parser.parse_args(argv)
    if args.screenshot is not None and not args.smoke_test:
        parser.error("--screenshot is only used with --smoke-test")
    return args


def launch(argv: list[str]) -> int:
    """Show the window, start loading the model, run the event loop; the exit code."""
    args = _parse(argv)
    # Qt's own message for a missing X11 library names one library and the wrong fix;
    # check them all before any QApplication exists (no Qt or torch import, one ldd call).
    from ioi_desktop.gui.platform_check import check_platform_libraries

    problem = check_platform_libraries()
    if problem:
        print(problem, file=sys.stderr)
        return 2
    from PySide6.QtCore import QSettings, QTimer

    from ioi_desktop.gui.app import create_application
    from ioi_desktop.gui.main_window import MainWindow

    app = create_application()
    settings = None
    if args.smoke_test:
        # A smoke test must neither depend on nor change the user's remembered layout/model.
        scratch = tempfile.mkdtemp(prefix="ioi-desktop-smoke-")
        settings = QSettings(str(Path(scratch) / "settings.ini"), QSettings.IniFormat)
    window = MainWindow(settings=settings, build_panels=False)
    window.start(load_model=False)  # the notebook set, as saved (nothing to undo yet)
    window.show()
    app.processEvents()
    shown_after = time.perf_counter() - _STARTED
    # The pyqtgraph panels take about a second to build: do it once the window is on screen.
    window.build_result_panels()
    if not args.smoke_test:
        QTimer.singleShot(0, lambda: window.load_model(window.model_picker.spec()))
        return app.exec()
    from ioi_desktop.gui.smoke import SmokeTest

    smoke = SmokeTest(window, screenshot=args.screenshot, timeout_s=args.timeout, shown_after_s=shown_after)
    QTimer.singleShot(0, smoke.begin)
    app.exec()
    if smoke.failure:
        print(f"ioi-desktop --smoke-test: FAILED: {smoke.failure}", file=sys.stderr)
        return 1
    print(smoke.summary)
    return 0
