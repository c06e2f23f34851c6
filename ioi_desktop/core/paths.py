"""Where things live: the bundled resources and the user's data folder.

``resources_dir()`` is the one resolver for ``resources/`` in every layout:
- a frozen (PyInstaller) build: ``<bundle>/resources`` next to the executable's data;
- a source checkout or editable install: the repo's ``resources/``;
- a regular ``pip install``: the installed data package ``ioi_desktop_resources``.
``IOI_DESKTOP_RESOURCES`` overrides all of them (used by tests and support).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from ioi_desktop.core.errors import FileFormatError

BUNDLED_MODEL_NAME = "ioi-mini"
_MARKER = "data"  # every valid resources folder has resources/data/


def resource_dir_candidates() -> list[Path]:
    """Where the resources folder may be, in the order tried.

    ``$IOI_DESKTOP_RESOURCES``, a frozen build's folder, the checkout, the installed data package.
    """
    found: list[Path] = []
    env = os.environ.get("IOI_DESKTOP_RESOURCES")
    if env:
        found.append(Path(env))
    if getattr(sys, "frozen", False):
        base = Path(getattr(sys, "_MEIPASS", Path(sys.executable).parent))
        found.append(base / "resources")
    found.append(Path(__file__).resolve().parents[2] / "resources")
    spec = importlib.util.find_spec("ioi_desktop_resources")
    if spec is not None and spec.submodule_search_locations:
        found.extend(Path(p) for p in spec.submodule_search_locations)
    return found


def resources_dir() -> Path:
    """The folder holding the bundled model, word lists, icons and prompt sets."""
    for candidate in resource_dir_candidates():
        if (candidate / _MARKER).is_dir():
            return candidate
    raise FileFormatError(
        "The application's resources folder was not found.",
        "Reinstall IOI Desktop, or set IOI_DESKTOP_RESOURCES to the 'resources' folder of a checkout.",
    )


def resource_path(*parts: str) -> Path:
    """A path inside ``resources_dir()``."""
    return resources_dir().joinpath(*parts)


def bundled_model_dir() -> Path:
    return resource_path("models", BUNDLED_MODEL_NAME)


def user_data_dir() -> Path:
    """Per-user folder for logs and settings; never inside the install folder."""
    env = os.environ.get("IOI_DESKTOP_DATA")
    if env:
        base = Path(env)
    elif sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local")) / "IOI Desktop"
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support" / "IOI Desktop"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "ioi-desktop"
    base.mkdir(parents=True, exist_ok=True)
    return base
