"""The error log: tracebacks of unexpected failures, for bug reports, not for the screen.

When a job fails with something that is not an expected
:class:`~ioi_desktop.core.errors.IOIError` (a bug), the GUI shows one sentence
naming the cause and appends the full traceback, with a timestamp and the app
version, to ``user_data_dir()/logs/ioi-desktop.log``. The log is capped: when
it grows past ``MAX_LOG_BYTES`` the older half is dropped, so it never fills
the disk. Writing the log must never raise: a failure to log returns None.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

from ioi_desktop import __version__

LOG_NAME = "ioi-desktop.log"
MAX_LOG_BYTES = 1024 * 1024


def log_path() -> Path:
    from ioi_desktop.core.paths import user_data_dir

    return user_data_dir() / "logs" / LOG_NAME


def write_error_log(title: str, details: str) -> Path | None:
    """Append ``details`` (a traceback) under a header naming ``title``; the log's path, or None if it failed."""
    try:
        path = log_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        stamp = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        entry = f"=== {stamp} IOI Desktop {__version__}: {title}\n{details.rstrip()}\n\n"
        if path.is_file() and path.stat().st_size > MAX_LOG_BYTES:
            kept = path.read_bytes()[-MAX_LOG_BYTES // 2:]
            path.write_bytes(kept)
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(entry)
        return path
    except OSError:
        return None
