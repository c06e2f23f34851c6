"""The desktop app (PySide6 + pyqtgraph) over the Qt-free ``ioi_desktop.core``.

``app`` creates the QApplication and theme, ``main_window`` the window with its
docks and actions, ``worker`` the one background thread, ``panels`` and
``dialogs`` the inputs and result views. Importing this package imports no
torch: the model is loaded in the worker thread after the window is shown.
"""
