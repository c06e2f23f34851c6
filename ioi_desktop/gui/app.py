"""QApplication creation and a light/dark theme that follows the system.

Qt 6.5+ reports the desktop's colour scheme (``QStyleHints.colorScheme``); we
use the Fusion style, which draws every widget from the palette, and set a
dark or light palette to match. pyqtgraph plots take their background and
foreground from the same choice, so plots do not stay white in a dark desktop.
The theme is re-applied when the system scheme changes while the app runs.
"""

from __future__ import annotations

import sys

from PySide6.QtCore import QCoreApplication, Qt
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication

from ioi_desktop import APP_NAME, __version__

ORGANIZATION = "IOI Desktop"


def system_prefers_dark() -> bool:
    """True when the desktop asks for a dark colour scheme."""
    app = QGuiApplication.instance()
    if app is None:
        return False
    return app.styleHints().colorScheme() == Qt.ColorScheme.Dark


def _dark_palette() -> QPalette:
    palette = QPalette()
    window, base, text = QColor(45, 45, 48), QColor(30, 30, 32), QColor(225, 225, 225)
    disabled = QColor(127, 127, 127)
    palette.setColor(QPalette.Window, window)
    palette.setColor(QPalette.WindowText, text)
    palette.setColor(QPalette.Base, base)
    palette.setColor(QPalette.AlternateBase, window)
    palette.setColor(QPalette.ToolTipBase, QColor(60, 60, 64))
    palette.setColor(QPalette.ToolTipText, text)
    palette.setColor(QPalette.PlaceholderText, disabled)
    palette.setColor(QPalette.Text, text)
    palette.setColor(QPalette.Button, window)
    palette.setColor(QPalette.ButtonText, text)
    palette.setColor(QPalette.BrightText, QColor(255, 90, 90))
    palette.setColor(QPalette.Link, QColor(100, 160, 255))
    palette.setColor(QPalette.Highlight, QColor(42, 130, 218))
    palette.setColor(QPalette.HighlightedText, QColor(255, 255, 255))
    for role in (QPalette.Text, QPalette.ButtonText, QPalette.WindowText):
        palette.setColor(QPalette.Disabled, role, disabled)
    return palette


def apply_theme(app: QApplication, dark: bool | None = None) -> bool:
    """Set the Fusion style with a palette matching the system (or ``dark``).

    Returns whether the dark theme was applied.
    """
    dark = system_prefers_dark() if dark is None else dark
    app.setStyle("Fusion")
    app.setPalette(_dark_palette() if dark else app.style().standardPalette())
    app.setProperty("ioi_dark_theme", dark)
    # pyqtgraph loads after the window shows; its plots pick the theme up on import.
    if "pyqtgraph" in sys.modules:
        from ioi_desktop.gui.widgets.colors import configure_pyqtgraph

        configure_pyqtgraph(dark)
    return dark


def _set_icon(app: QApplication) -> None:
    """The window/taskbar icon, from the same resources folder as everything else."""
    from PySide6.QtGui import QIcon

    from ioi_desktop.core.errors import FileFormatError
    from ioi_desktop.core.paths import resource_path

    try:
        icon = resource_path("icons", "ioi-desktop.png")
    except FileFormatError:
        return
    if icon.is_file():
        app.setWindowIcon(QIcon(str(icon)))
    # Lets Linux desktops match the window to ioi-desktop.desktop (StartupWMClass).
    app.setDesktopFileName("ioi-desktop")


def create_application(argv: list[str] | None = None) -> QApplication:
    """The QApplication (reused if one exists), named for QSettings, themed."""
    QCoreApplication.setOrganizationName(ORGANIZATION)
    QCoreApplication.setApplicationName(APP_NAME)
    QCoreApplication.setApplicationVersion(__version__)
    app = QApplication.instance()
    if app is None:
        app = QApplication([sys.argv[0] if sys.argv else "ioi-desktop", *(argv or [])])
    apply_theme(app)
    _set_icon(app)
    app.styleHints().colorSchemeChanged.connect(lambda _scheme: apply_theme(app))
    return app

