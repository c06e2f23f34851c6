"""Fixtures for the app-shell tests: the real window and worker thread, one tiny model per session.

They live in tests/support/gui_fixtures.py (the GUI recovery tests use them too).
Screenshots go to ``artifacts/screenshots/`` for people to look at.
"""

from __future__ import annotations

from tests.support.gui_fixtures import loaded_window, settings, tiny_handle, tiny_model_dir, window  # noqa: F401
