"""The ``--smoke-test`` sequence, driven by the real window's signals.

Load the bundled model -> run every analysis on the notebook set -> select the
strongest head of the head-z patching grid (as a click on it would) -> let the
panels redraw -> check the window is shown (visible and exposed on the platform
Qt runs on, which the summary names: xcb, wayland, offscreen) -> screenshot (if
asked) -> summary. Each step starts from the
previous step's signal; a timer bounds the whole sequence.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, Qt, QTimer
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QApplication

from ioi_desktop.core.grids import strongest_cell
from ioi_desktop.core.models import ModelSpec
from ioi_desktop.gui.main_window import MainWindow
from ioi_desktop.gui.worker import JobFailure

STRONGEST_HEAD_ARRAY = "patch_head_z"
_SETTLE_MS = 300


class SmokeTest(QObject):
    """Runs the sequence; ``failure`` ('' on success) and ``summary`` when the app quits."""

    def __init__(self, window: MainWindow, screenshot: Path | None, timeout_s: float, shown_after_s: float) -> None:
        super().__init__(window)
        self.window = window
        self.screenshot = screenshot
        self.shown_after_s = shown_after_s
        self.failure = ""
        self.summary = ""
        self.strongest_head: tuple[int, int] | None = None
        self._run_started = 0.0
        self._run_seconds = 0.0
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(int(timeout_s * 1000))
        self._timer.timeout.connect(lambda: self._fail(f"timed out after {timeout_s:.0f} s"))
        worker = window.worker
        worker.model_loaded.connect(self._on_model_loaded)
        worker.model_load_failed.connect(lambda f: self._fail(f"loading the model failed: {self._describe(f)}"))
        worker.run_failed.connect(lambda f: self._fail(f"the run failed: {self._describe(f)}"))
        worker.run_cancelled.connect(lambda: self._fail("the run was cancelled"))
        window.results_shown.connect(self._on_results_shown)

    def begin(self) -> None:
        self._timer.start()
        self.window.start(load_model=False)
        self.window.model_picker.set_spec(ModelSpec())
        if not self.window.load_model(ModelSpec()):
            self._fail("the model could not be queued for loading")

    def _on_model_loaded(self, _handle) -> None:
        for action in self.window.analysis_actions.values():
            action.setChecked(True)
        editor = self.window.prompt_editor
        if editor.checking:  # the prompt set is validated in the worker's input thread: run when it is done
            editor.checked.connect(self._start_run, Qt.SingleShotConnection)
            return
        self._start_run()

    def _start_run(self) -> None:
        self._run_started = time.perf_counter()
        if not self.window.run():
            self._fail(f"Run did not start: {self.window.run_blocked_reason() or self.window.step_label.text()}")

    def _on_results_shown(self, results) -> None:
        self._run_seconds = time.perf_counter() - self._run_started
        if not results.has_array(STRONGEST_HEAD_ARRAY):
            self._fail(f"the results have no {STRONGEST_HEAD_ARRAY} grid")
            return
        grid = np.asarray(results.array(STRONGEST_HEAD_ARRAY))
        (layer, head), _value = strongest_cell(grid)
        self.strongest_head = (layer, head)
        self.window.selection.select_head(int(layer), int(head))
        patching = self.window.docks.get("Patching")
        if patching is not None:
            patching.raise_()
        # Let the panels repaint the selection before the screenshot.
        QTimer.singleShot(_SETTLE_MS, self._finish)

    def _finish(self) -> None:
        if self.failure:
            return
        if self.window.panel_errors:
            self._fail(f"a panel failed to draw: {self.window.panel_errors[0]}")
            return
        handle = self.window.windowHandle()
        if not self.window.isVisible() or handle is None or not handle.isExposed():
            self._fail(f"the window was never shown on the {QGuiApplication.platformName()} platform")
            return
        results = self.window.results
        info = self.window.handle.info
        if self.screenshot is not None:
            self.screenshot.parent.mkdir(parents=True, exist_ok=True)
            if not self.window.grab().save(str(self.screenshot)):
                self._fail(f"the screenshot could not be written to {self.screenshot}")
                return
        clean = np.asarray(results.array("logit_diff_clean"))
        layer, head = self.strongest_head
        self.summary = (
            f"smoke test passed: model {info.name} ({info.n_layers} layers x {info.n_heads} heads, {info.device}), "
            f"{clean.shape[0]} pairs, mean logit diff {float(clean.mean()):.3f}, "
            f"{len(results.analyses)} analyses in {self._run_seconds:.1f} s, strongest head-z patch L{layer}H{head}, "
            f"window shown after {self.shown_after_s:.2f} s on the {QGuiApplication.platformName()} platform"
            + (f", screenshot {self.screenshot}" if self.screenshot is not None else "")
        )
        self._quit()

    def _fail(self, reason: str) -> None:
        if not self.failure:
            self.failure = reason
        self._quit()

    def _quit(self) -> None:
        self._timer.stop()
        self.window.close()
        QApplication.instance().quit()

    @staticmethod
    def _describe(failure: JobFailure) -> str:
        return f"{failure.message} {failure.hint}".strip()
