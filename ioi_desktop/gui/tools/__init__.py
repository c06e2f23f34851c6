"""Tools that drive the real window from a script (run with ``python -m ioi_desktop.gui.tools.<name>``)."""
