"""Modal dialogs of the desktop app (pair builder, about)."""
