"""Headless subcommands of ``ioi-desktop`` (one module each; see ``ioi_desktop/cli.py``)."""
