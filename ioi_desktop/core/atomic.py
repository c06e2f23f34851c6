"""Atomic file writes: a temporary file in the same folder, fsync, then rename.

A failed or interrupted save never destroys the previous file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ioi_desktop.core.errors import FileFormatError


def _mode_for(target: Path) -> int:
    """Keep an existing file's permissions; new files get 0666 minus the umask."""
    try:
        return target.stat().st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise FileFormatError(
            f"Cannot write to the folder {folder}: {exc.strerror or exc}.",
            "Choose a folder you can write to.",
        ) from exc
    try:
        # mkstemp makes the file private (0600); give it the mode a plain open() would.
        os.chmod(tmp, _mode_for(target))
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise FileFormatError(
            f"Saving {target.name} failed: {exc.strerror or exc}; the previous file is unchanged.",
            "Free some disk space or choose another folder, then save again.",
        ) from exc
    return target


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))
