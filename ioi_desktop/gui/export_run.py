"""File > Export without blocking the GUI thread: export steps run one per event-loop turn.

An export is a generator of steps (``ResultPanel.export_steps``, chained over
every panel by the window): between two ``yield``s it does a small piece of
GUI-thread work (drawing a panel that was hidden, painting one widget figure
onto an image); each yielded job captures no Qt object and runs in the
worker's input thread (:meth:`Worker.prepare`): rasterising SVG grids,
encoding PNGs, writing CSVs. The paths a job wrote are sent back into the
generator on the next turn. The files are those of a synchronous
``run_export_steps`` of the same steps, in the same order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

from PySide6.QtCore import QTimer

from ioi_desktop.core.errors import IOIError
from ioi_desktop.gui.worker import defer_full_collections_while

EXPORT = "export"
_RUNNING: set[int] = set()  # ids of the exports under way


def exports_running() -> bool:
    return bool(_RUNNING)


# A full garbage collection (tens of ms or more) waits while an export runs.
defer_full_collections_while(exports_running)


class ExportRun:
    """Drives export steps: ``on_done(paths)`` or ``on_failed(message, hint)`` on the GUI thread."""

    def __init__(self, worker: Any, steps: Iterator, on_done: Callable[[list[Path]], None],
                 on_failed: Callable[[str, str], None]) -> None:
        self._worker = worker
        self._steps = steps
        self._on_done = on_done
        self._on_failed = on_failed
        self.written: list[Path] = []
        self.finished = False

    def start(self) -> None:
        _RUNNING.add(id(self))
        QTimer.singleShot(0, lambda: self._advance(None, first=True))

    def _advance(self, paths: list[Path] | None, first: bool = False) -> None:
        if self.finished:
            return
        try:
            job = next(self._steps) if first else self._steps.send(paths)
        except StopIteration:
            self._finish()
            self._on_done(list(self.written))
            return
        except IOIError as error:
            self._fail(error.message, error.hint)
            return
        except OSError as error:
            self._fail(f"Could not write the export: {error.strerror or error}.", "Choose a folder you can write to.")
            return
        if job is None:
            QTimer.singleShot(0, lambda: self._advance(None))
            return
        self._worker.prepare(EXPORT, lambda _context: job(), self._job_done,
                             lambda failure: self._fail(failure.message, failure.hint))

    def _job_done(self, paths: list[Path]) -> None:
        self.written.extend(paths or [])
        # The next GUI step on a later turn, so events queued meanwhile (repaints, clicks) go first.
        QTimer.singleShot(0, lambda: self._advance(paths))

    def _finish(self) -> None:
        _RUNNING.discard(id(self))
        self.finished = True
        self._steps.close()

    def _fail(self, message: str, hint: str) -> None:
        self._finish()
        self._on_failed(message, hint)
