"""Qt-free core of IOI Desktop: models, prompts, analyses, results, sessions, runner.

Nothing in this package may import PySide6 or pyqtgraph (tests/core/test_qt_free.py).
"""
