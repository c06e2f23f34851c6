"""QApplication setup: the theme follows the system's light/dark choice, names for QSettings."""

from __future__ import annotations

import pyqtgraph
from PySide6.QtCore import QCoreApplication
from PySide6.QtGui import QPalette

from ioi_desktop import APP_NAME
from ioi_desktop.gui.app import apply_theme, create_application, system_prefers_dark


def test_dark_and_light_palettes(qtbot):
    app = create_application()
    try:
        assert apply_theme(app, dark=True)
        window = app.palette().color(QPalette.Window)
        text = app.palette().color(QPalette.WindowText)
        assert window.lightness() < 100 < text.lightness()
        assert pyqtgraph.getConfigOption("background") != "w"
        assert not apply_theme(app, dark=False)
        assert app.palette().color(QPalette.Window).lightness() > 150
        assert pyqtgraph.getConfigOption("background") == "w"
    finally:
        apply_theme(app)
    assert app.property("ioi_dark_theme") == system_prefers_dark()


def test_application_is_named_for_settings(qtbot):
    create_application()
    assert QCoreApplication.applicationName() == APP_NAME
    assert QCoreApplication.organizationName()


def test_application_has_the_app_icon(qapp):
    from ioi_desktop.gui.app import create_application

    app = create_application()
    assert not app.windowIcon().isNull()
    assert app.windowIcon().availableSizes()
