"""The one background thread: model loading and analysis runs happen here.

Design (Orange3's ``ConcurrentWidgetMixin`` and napari's thread workers, kept
small): a :class:`Worker` lives on the GUI thread and is the only object the
window talks to. It owns a ``QThread`` and a :class:`_JobExecutor` moved to that
thread. A job is a plain function ``job(context) -> value`` run by the executor;
it reports through its :class:`JobContext` (progress, partial rows as
``core.runner.RowsEvent``, the run's metadata, per-analysis results) and
checks ``context.cancel_token`` between units of work. Every
report crosses back to the GUI thread as a queued signal, so slots connected to
the worker's signals always run on the GUI thread and may touch widgets.

Reports are coalesced on the GUI side: partial rows and progress are queued
as they arrive and handed on by a short timer, a few rows per tick within a
time budget, and the next hand-over waits twice as long as the last one
took, so a worker that produces rows faster than the panels can draw them
never starves the GUI event loop (timers, repaints, clicks). When a run
succeeds, rows still queued are dropped: its full results replace them.

Input jobs (building, validating and tokenizing a prompt set, reading and
writing session files) run on a second, light thread through
:meth:`Worker.prepare`, so they never wait behind a long run and never block
the GUI thread. They are "latest wins" per kind: a newer job of the same kind
cancels the older one, whose result is then dropped; the caller's callbacks
run on the GUI thread.

One run at a time: asking for another while one runs is refused
(``job_refused``) rather than queued, because a queued run would silently use
inputs the user may be editing. ``shutdown()`` cancels the current job, lets it
stop at its next unit boundary, and joins the thread.

While any Worker's threads run, Python's cyclic garbage collector runs only on
the GUI thread (:class:`_GuiThreadCollector`, pyqtgraph's ``GarbageCollector``
idea): an automatic collection can start in whichever thread happens to
allocate, and one started in a worker thread may free the last Python
reference to a Qt object (a closed window in a reference cycle) there, which
deadlocks against the GUI thread deleting that object's children (seen in the
test suite). The objects alive when the first Worker starts are frozen out of
collection (``gc.freeze``), so full collections on the GUI thread scan only
what was created since.

Expected failures (``IOIError``) become a :class:`JobFailure` with the
message and the hint; anything else becomes a failure that says it is a bug,
with the traceback in ``details``. The app keeps working either way.
"""

from __future__ import annotations

import gc
import itertools
import time
import traceback
import weakref
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

import shiboken6
from PySide6.QtCore import QCoreApplication, QObject, QThread, QTimer, Signal, Slot

from ioi_desktop.core.analyses import ANALYSES
from ioi_desktop.core.errors import Cancelled, IOIError
from ioi_desktop.core.runner import CancelToken, Runner

LOAD_MODEL = "load_model"
RUN = "run"
NOTEBOOK_CHECK = "notebook_check"
INVENTORY = "inventory"
RUN_META = "run_meta"
# How often queued reports are handed to the GUI, and how long one hand-over may take.
FLUSH_INTERVAL_MS = 50
FLUSH_BUDGET_S = 0.03


class _GuiThreadCollector:
    """Python's cyclic GC, moved to a GUI-thread timer while any Worker's threads run.

    ``acquire()`` (first Worker) freezes the objects alive now, disables automatic collection
    and starts the timer; ``release()`` (last Worker joined) undoes all three. Each tick
    collects the young generations when CPython's own thresholds say so; the oldest
    generation is collected when it has grown by a quarter since its last collection
    (CPython's own rule for full collections), so full scans stay as rare as they are
    without this, and cover only objects created since ``acquire()``.

    A full collection takes tens to hundreds of milliseconds on the GUI thread, so one that
    is due waits while the app is working (a run or an input job in a Worker, or anything
    registered with :func:`defer_full_collections_while`: panels waiting to draw, an export)
    and runs at the first idle tick; once the oldest generation has grown FORCE_GROWTH-fold
    it runs anyway, so memory stays bounded during a long run. :meth:`freeze_survivors`
    leaves long-lived objects (a built window) out of later full scans."""

    INTERVAL_MS = 1000
    FULL_CHECK_EVERY = 10  # ticks between looks at the oldest generation's size
    FULL_GROWTH = 1.25  # CPython's rule: a full collection when the oldest generation grew by 25%
    FORCE_GROWTH = 4.0  # ... and one even while the app is busy when it has grown this much
    MIN_GROWTH = 1000  # objects; fewer new ones are not worth a full scan
    FORCE_MIN = 100_000  # objects in the oldest generation below which a busy app never forces one

    def __init__(self) -> None:
        self._users = 0
        self._timer: QTimer | None = None
        self._ticks = 0
        self._old_after_full = 0
        self._full_due = False  # a full collection is due but waits for the app to be idle
        self._workers: "weakref.WeakSet[Worker]" = weakref.WeakSet()
        self._deferrers: list[Callable[[], bool]] = []
        self.full_collections = 0

    @property
    def active(self) -> bool:
        return self._users > 0

    def acquire(self, worker: "Worker | None" = None) -> None:
        if worker is not None:
            self._workers.add(worker)
        self._users += 1
        if self._users > 1:
            return
        gc.freeze()
        gc.disable()
        self._old_after_full = 0
        self._ticks = 0
        self._timer = QTimer()
        self._timer.setInterval(self.INTERVAL_MS)
        self._timer.timeout.connect(self.collect)
        self._timer.start()

    def release(self, worker: "Worker | None" = None) -> None:
        if worker is not None:
            self._workers.discard(worker)
        if self._users == 0:
            return
        self._users -= 1
        if self._users > 0:
            return
        if self._timer is not None:
            self._timer.stop()
            self._timer.deleteLater()
            self._timer = None
        gc.unfreeze()
        gc.enable()

    def defer_while(self, condition: Callable[[], bool]) -> Callable[[], None]:
        """Hold due full collections while ``condition()`` is true (a plain function: no Qt object);
        returns a function that stops this."""
        self._deferrers.append(condition)
        return lambda: self._deferrers.remove(condition) if condition in self._deferrers else None

    def busy(self) -> bool:
        """True while a full collection should wait: a Worker runs or prepares, or a deferrer says so."""
        workers = [w for w in list(self._workers) if shiboken6.isValid(w)]
        return any(w.busy or w.preparing for w in workers) or any(condition() for condition in self._deferrers)

    def freeze_survivors(self) -> None:
        """Leave every object alive now out of later full collections (``gc.freeze``, until the last
        Worker stops): for objects that live as long as the app, such as a just-built window."""
        if self.active:
            gc.freeze()
            self._old_after_full = 0

    def collect(self) -> None:
        """One tick: what CPython's automatic collection would have done by now, on this thread."""
        threshold0, threshold1, _ = gc.get_threshold()
        count0, count1, _ = gc.get_count()
        if count0 > threshold0:
            gc.collect(1 if count1 > threshold1 else 0)
        self._ticks += 1
        if self._ticks % self.FULL_CHECK_EVERY == 0 or (self._full_due and not self.busy()):
            old = len(gc.get_objects(2))
            self._full_due = old > self.FULL_GROWTH * self._old_after_full + self.MIN_GROWTH
            forced = old > self.FORCE_GROWTH * max(self._old_after_full, self.FORCE_MIN / self.FORCE_GROWTH)
            if self._full_due and (forced or not self.busy()):
                gc.collect(2)
                self.full_collections += 1
                self._full_due = False
                self._old_after_full = len(gc.get_objects(2))


def defer_full_collections_while(condition: Callable[[], bool]) -> Callable[[], None]:
    """Hold the GUI thread's full garbage collections while ``condition()`` is true (see
    :class:`_GuiThreadCollector`); ``condition`` runs on the GUI thread and must capture no Qt object.
    Returns a function that stops this."""
    return _COLLECTOR.defer_while(condition)


def gui_thread_collector() -> "_GuiThreadCollector":
    """The one collector (for tests and diagnostics)."""
    return _COLLECTOR


def freeze_long_lived_objects() -> None:
    """Leave the objects alive now out of later full collections (call once the window is built)."""
    _COLLECTOR.freeze_survivors()


_COLLECTOR = _GuiThreadCollector()


@dataclass(frozen=True)
class JobFailure:
    """What went wrong in a job, in words for the user."""

    kind: str
    message: str
    hint: str = ""
    details: str = ""
    cancelled: bool = False

    @classmethod
    def from_exception(cls, kind: str, error: BaseException) -> "JobFailure":
        if isinstance(error, Cancelled):
            return cls(kind, error.message, error.hint, cancelled=True)
        if isinstance(error, IOIError):
            return cls(kind, error.message, error.hint)
        if isinstance(error, MemoryError):
            return cls(kind, "The computer ran out of memory.",
                       "Use fewer prompt pairs, fewer analyses, or a smaller model.",
                       "".join(traceback.format_exception(error)))
        return cls(
            kind,
            f"An unexpected error stopped the job: {type(error).__name__}: {error}",
            "This is a bug in IOI Desktop; the details below help to report it. "
            "The app keeps working: you can change the inputs and try again.",
            "".join(traceback.format_exception(error)),
        )


class JobContext:
    """Handed to a job function in the worker thread: reporting and cancellation."""

    def __init__(self, executor: "_JobExecutor", job_id: int, cancel_token: CancelToken) -> None:
        self._executor = executor
        self._job_id = job_id
        self.cancel_token = cancel_token

    def progress(self, done: int, total: int, message: str = "") -> None:
        self._executor.progressed.emit(self._job_id, int(done), int(total), str(message))

    def rows(self, event: Any) -> None:
        """Streamed rows (a ``core.runner.RowsEvent``)."""
        self._executor.rows_produced.emit(self._job_id, event)

    def result(self, name: str, value: Any) -> None:
        self._executor.result_produced.emit(self._job_id, name, value)


@dataclass
class _Job:
    job_id: int
    kind: str
    function: Callable[[JobContext], Any]
    cancel_token: CancelToken


class _JobExecutor(QObject):
    """Lives in the worker thread; runs one job per ``execute`` call."""

    progressed = Signal(int, int, int, str)
    rows_produced = Signal(int, object)
    result_produced = Signal(int, str, object)
    succeeded = Signal(int, object)
    failed = Signal(int, object)

    @Slot(object)
    def execute(self, job: _Job) -> None:
        """Run ``job`` here. Job functions must capture no Qt object (a window, a panel, the Worker):
        the last reference to a job may drop in this thread, and a Qt object freed here deadlocks
        against the GUI thread deleting its children.

        The thread keeps the GUI thread's OS priority. A lower one (tried: nice +5) lets the GUI wait
        longer on a busy machine, not shorter: a job holds the GIL much of the time (the model's Python
        code), and a low-priority thread holding it is the one the scheduler pauses while the GUI
        thread waits for the GIL (benchmarks/gui_latency.py, 1000 pairs, load average 4-7: a run's
        longest stall 137-339 ms, mostly with the GUI thread idle in it, at nice +5; 61-70 ms at equal
        priority)."""
        context = JobContext(self, job.job_id, job.cancel_token)
        try:
            job.cancel_token.raise_if_cancelled()
            value = job.function(context)
        except BaseException as error:  # noqa: BLE001 - every failure must reach the GUI
            self.failed.emit(job.job_id, JobFailure.from_exception(job.kind, error))
        else:
            self.succeeded.emit(job.job_id, value)


@dataclass
class _InputJob:
    job: _Job
    on_done: Callable[[Any], None]
    on_failed: Callable[[JobFailure], None] | None


class Worker(QObject):
    """GUI-thread face of the background threads. Signals are past tense."""

    busy_changed = Signal(bool)
    job_started = Signal(str)
    job_refused = Signal(str)
    # done, total, message, estimated seconds left (-1 when unknown)
    progress_changed = Signal(int, int, str, float)
    rows_ready = Signal(object)  # core.runner.RowsEvent
    result_ready = Signal(str, object)  # analysis name, its Result
    run_meta_ready = Signal(object)  # the run's metadata, before its first result
    inventory_found = Signal(object)
    model_loaded = Signal(object)
    model_load_failed = Signal(object)
    run_finished = Signal(object)
    run_failed = Signal(object)
    run_cancelled = Signal()
    notebook_check_finished = Signal(object)
    preparing_changed = Signal(bool)  # True while any input job (prepare) is pending

    _job_submitted = Signal(object)
    _input_submitted = Signal(object)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._thread = QThread()
        self._thread.setObjectName("ioi-desktop-worker")
        self._executor = _JobExecutor()
        self._executor.moveToThread(self._thread)
        self._job_submitted.connect(self._executor.execute)
        self._executor.progressed.connect(self._on_progressed)
        self._executor.rows_produced.connect(self._on_rows_produced)
        self._executor.result_produced.connect(self._on_result_produced)
        self._executor.succeeded.connect(self._on_succeeded)
        self._executor.failed.connect(self._on_failed)
        self._thread.finished.connect(self._executor.deleteLater)
        self._ids = itertools.count(1)
        self._current: _Job | None = None
        self._pending_rows: deque = deque()
        self._pending_progress: tuple | None = None
        self._flush_timer = QTimer(self)
        self._flush_timer.setInterval(FLUSH_INTERVAL_MS)
        self._flush_timer.timeout.connect(self._flush)
        # Used only inside jobs, i.e. only in the worker thread; it keeps cached forward passes.
        self._runner = Runner()
        self._started_at = 0.0
        self._thread.start()
        self._input_thread = QThread()
        self._input_thread.setObjectName("ioi-desktop-inputs")
        self._input_executor = _JobExecutor()
        self._input_executor.moveToThread(self._input_thread)
        self._input_submitted.connect(self._input_executor.execute)
        self._input_executor.succeeded.connect(self._on_input_succeeded)
        self._input_executor.failed.connect(self._on_input_failed)
        self._input_thread.finished.connect(self._input_executor.deleteLater)
        self._inputs: dict[int, _InputJob] = {}
        self._latest_input: dict[str, int] = {}
        self._input_thread.start()
        _COLLECTOR.acquire(self)
        self._holds_collector = True
        # Also stop the thread when the app quits without closing the window first.
        app = QCoreApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.shutdown)

    @property
    def busy(self) -> bool:
        return self._current is not None

    @property
    def current_kind(self) -> str | None:
        return None if self._current is None else self._current.kind

    @property
    def thread(self) -> QThread:
        return self._thread

    def submit(self, kind: str, function: Callable[[JobContext], Any]) -> bool:
        """Start ``function`` in the worker thread; False (and ``job_refused``) if busy."""
        if self._current is not None:
            what = "a model is loading" if self._current.kind == LOAD_MODEL else "a run is in progress"
            self.job_refused.emit(f"Not started: {what}. Wait for it to finish or cancel it (Esc).")
            return False
        if not self._thread.isRunning():
            self.job_refused.emit("Not started: the worker has shut down.")
            return False
        self._current = _Job(next(self._ids), kind, function, CancelToken())
        self._started_at = time.monotonic()
        self.busy_changed.emit(True)
        self.job_started.emit(kind)
        self._job_submitted.emit(self._current)
        return True

    @property
    def preparing(self) -> bool:
        """True while an input job (pair building, validation, a session file) is pending."""
        return bool(self._inputs)

    def preparing_kind(self, kind: str) -> bool:
        return kind in self._latest_input

    def prepare(self, kind: str, function: Callable[[JobContext], Any], on_done: Callable[[Any], None],
                on_failed: Callable[[JobFailure], None] | None = None) -> int:
        """Run ``function(context)`` on the input thread; ``on_done(value)`` / ``on_failed(failure)``
        run on the GUI thread unless a newer job of the same ``kind`` replaced this one. Returns its id."""
        previous = self._latest_input.get(kind)
        if previous is not None and previous in self._inputs:
            self._inputs[previous].job.cancel_token.cancel()
        job = _Job(next(self._ids), kind, function, CancelToken())
        was_preparing = self.preparing
        self._inputs[job.job_id] = _InputJob(job, on_done, on_failed)
        self._latest_input[kind] = job.job_id
        if not was_preparing:
            self.preparing_changed.emit(True)
        self._input_submitted.emit(job)
        return job.job_id

    def _take_input(self, job_id: int) -> _InputJob | None:
        entry = self._inputs.pop(job_id, None)
        if entry is None:
            return None
        latest = self._latest_input.get(entry.job.kind) == job_id
        if latest:
            del self._latest_input[entry.job.kind]
        if not self._inputs:
            self.preparing_changed.emit(False)
        return entry if latest else None

    def _on_input_succeeded(self, job_id: int, value: Any) -> None:
        entry = self._take_input(job_id)
        if entry is not None:
            entry.on_done(value)

    def _on_input_failed(self, job_id: int, failure: JobFailure) -> None:
        entry = self._take_input(job_id)
        if entry is not None and not failure.cancelled and entry.on_failed is not None:
            entry.on_failed(failure)

    def load_model(self, spec: Any) -> bool:
        """Load a model (``core.models.ModelSpec``) in the background."""
        runner = self._runner  # jobs capture no Qt object (see ``_JobExecutor.execute``)
        return self.submit(LOAD_MODEL, lambda context: load_model_job(runner, spec, context))

    def run_analyses(self, handle: Any, prompt_set: Any, request: Any) -> bool:
        """Run a ``core.workbench.RunRequest`` through the core runner in the background."""
        runner = self._runner
        return self.submit(RUN, lambda context: run_analyses_job(runner, handle, prompt_set, request, context))

    @property
    def forward_count(self) -> int:
        """Forward passes over a prompt set made so far (cached runs are reused between runs)."""
        return self._runner.forward_count

    def reproduce_notebook(self, spec: Any, reference: Any) -> bool:
        """Load ``spec`` (GPT-2 small) and compare the demo's published numbers with ours in the background."""
        runner = self._runner
        return self.submit(NOTEBOOK_CHECK, lambda context: notebook_check_job(runner, spec, reference, context))

    def cancel(self) -> bool:
        """Ask the current job to stop at its next unit boundary."""
        if self._current is None:
            return False
        self._current.cancel_token.cancel()
        return True

    def shutdown(self, timeout_ms: int = 30000) -> bool:
        """Cancel the current job and stop the thread; True if it stopped in time."""
        if self._current is not None:
            self._current.cancel_token.cancel()
        for entry in self._inputs.values():
            entry.job.cancel_token.cancel()
        self._thread.quit()
        self._input_thread.quit()
        stopped = self._thread.wait(timeout_ms)
        stopped = self._input_thread.wait(timeout_ms) and stopped
        if stopped and self._holds_collector:
            self._holds_collector = False
            _COLLECTOR.release(self)
        return bool(stopped)

    def _is_current(self, job_id: int) -> bool:
        return self._current is not None and self._current.job_id == job_id

    def _on_progressed(self, job_id: int, done: int, total: int, message: str) -> None:
        if not self._is_current(job_id):
            return
        elapsed = time.monotonic() - self._started_at
        # Linear extrapolation of the units done so far; unknown until one unit is done.
        eta = elapsed * (total - done) / done if 0 < done <= total else -1.0
        self._pending_progress = (done, total, message, float(eta))
        if not self._flush_timer.isActive():
            self._flush_timer.start()

    def _on_rows_produced(self, job_id: int, event: Any) -> None:
        if self._is_current(job_id):
            self._pending_rows.append(event)
            if not self._flush_timer.isActive():
                self._flush_timer.start()

    def _flush(self, budget_s: float = FLUSH_BUDGET_S) -> None:
        """Hand queued progress and rows to the GUI, stopping when the time budget is spent."""
        if self._pending_progress is not None:
            progress, self._pending_progress = self._pending_progress, None
            self.progress_changed.emit(*progress)
        started = time.monotonic()
        deadline = started + budget_s
        while self._pending_rows and time.monotonic() < deadline:
            self.rows_ready.emit(self._pending_rows.popleft())
        if not self._pending_rows:
            self._flush_timer.stop()
        # Drawing rows can take longer than the budget (one slow panel); wait twice as long
        # as this hand-over took, so the event loop stays free at least two thirds of the time.
        spent_ms = int((time.monotonic() - started) * 1000)
        self._flush_timer.setInterval(max(FLUSH_INTERVAL_MS, 2 * spent_ms))

    def _on_result_produced(self, job_id: int, name: str, value: Any) -> None:
        if not self._is_current(job_id):
            return
        if name == INVENTORY:
            self.inventory_found.emit(value)
        elif name == RUN_META:
            self.run_meta_ready.emit(value)
        else:
            # The finished result holds every row of this analysis: its queued rows are not needed.
            self._pending_rows = deque(event for event in self._pending_rows if event.analysis != name)
            self.result_ready.emit(name, value)

    def _finish(self, job_id: int, succeeded: bool) -> _Job | None:
        if not self._is_current(job_id):
            return None
        if succeeded:
            self._pending_rows.clear()
        # A cancelled or failed run keeps what it had finished: deliver every queued row.
        self._flush(budget_s=float("inf"))
        job, self._current = self._current, None
        self.busy_changed.emit(False)
        return job

    def _on_succeeded(self, job_id: int, value: Any) -> None:
        job = self._finish(job_id, succeeded=True)
        if job is None:
            return
        if job.kind == LOAD_MODEL:
            self.model_loaded.emit(value)
        elif job.kind == NOTEBOOK_CHECK:
            self.notebook_check_finished.emit(value)
        else:
            self.run_finished.emit(value)

    def _on_failed(self, job_id: int, failure: JobFailure) -> None:
        job = self._finish(job_id, succeeded=False)
        if job is None:
            return
        if job.kind == LOAD_MODEL:
            self.model_load_failed.emit(failure)
        elif failure.cancelled:
            self.run_cancelled.emit()
        else:
            self.run_failed.emit(failure)


@dataclass(frozen=True)
class Inventory:
    """What this machine offers: ``core.models`` DeviceInfo and LocalModel lists."""

    devices: list
    local_models: list


def load_model_job(runner: Runner, spec: Any, context: JobContext) -> Any:
    """Import torch/TransformerLens (first time only), list devices and models, load the model."""
    steps = 6  # import, inventory, load_model's four reported steps
    from ioi_desktop.core import models

    # A wrong path or a model missing from the cache is reported at once, before the slow imports.
    models.resolve_source(spec)
    context.progress(0, steps, "Importing PyTorch and TransformerLens…")
    context.progress(1, steps, "Looking for devices and cached models…")
    context.result(INVENTORY, Inventory(models.available_devices(), models.list_local_models()))
    context.cancel_token.raise_if_cancelled()
    done = 1

    def report(message: str) -> None:
        nonlocal done
        # Each loading step is a point where Cancel takes effect.
        context.cancel_token.raise_if_cancelled()
        done = min(done + 1, steps - 1)
        context.progress(done, steps, message)

    handle = models.load_model(spec, progress=report)
    context.cancel_token.raise_if_cancelled()
    # The previous model's cached activations are useless now; free them.
    runner.clear_cache()
    context.progress(steps, steps, f"Loaded {handle.info.name}")
    return handle


def run_analyses_job(runner: Runner, handle: Any, prompt_set: Any, request: Any, context: JobContext) -> Any:
    """Run the analyses through ``core.runner`` and forward what it reports."""
    titles = {info.name: info.title for info in ANALYSES}

    def on_progress(event) -> None:
        step = titles.get(event.analysis, "Forward passes")
        detail = f": {event.message}" if event.message else ""
        context.progress(event.done, event.total,
                         f"{step} ({event.analysis_done}/{event.analysis_total}){detail}")

    return runner.run(
        handle,
        prompt_set,
        list(request.analyses),
        dict(request.options),
        batch_size=request.batch_size,
        on_progress=on_progress,
        on_rows=context.rows,
        on_result=lambda result: context.result(result.analysis, result),
        on_start=lambda meta: context.result(RUN_META, meta),
        cancel_token=context.cancel_token,
    )


@dataclass(frozen=True)
class NotebookCheck:
    """What a notebook check hands back: the loaded model, the comparison and the run's results."""

    handle: Any
    comparison: Any
    results: Any


def notebook_check_job(runner: Runner, spec: Any, reference: Any, context: JobContext) -> NotebookCheck:
    """Load the model, run the demo's steps on its 8 pairs, compare with the published numbers."""
    from ioi_desktop.core import models
    from ioi_desktop.core.notebook_check import reproduce

    context.progress(0, 1, f"Loading {spec.source} for the notebook check…")
    handle = models.load_model(spec, progress=lambda message: context.cancel_token.raise_if_cancelled())
    runner.clear_cache()

    def on_progress(event) -> None:
        context.progress(event.done, event.total, f"Reproducing the demo: {event.analysis} ({event.message})")

    comparison, results = reproduce(handle, reference, runner, on_progress=on_progress, cancel_token=context.cancel_token)
    return NotebookCheck(handle, comparison, results)
