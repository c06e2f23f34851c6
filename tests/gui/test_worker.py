"""The worker thread on its own: jobs run off the GUI thread, failures become messages, one job at a time."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from ioi_desktop.core.analyses import patching
from ioi_desktop.core.errors import Cancelled, ModelLoadError
from ioi_desktop.core.runner import RowsEvent
from ioi_desktop.gui.worker import LOAD_MODEL, RUN, JobFailure, Worker


def head_z_row(layer: int, n_layers: int = 50) -> RowsEvent:
    """Streamed rows as the runner makes them: one layer of the head-z patching grid."""
    return RowsEvent("patching", "patch_head_z", (layer,), np.full(2, layer, np.float32), (n_layers, 2),
                     patching.Result)


@pytest.fixture
def worker(qtbot):
    from ioi_desktop.gui.app import create_application

    create_application()
    instance = Worker()
    yield instance
    assert instance.shutdown(10_000)
    assert not instance.thread.isRunning()


def test_job_runs_in_the_worker_thread_and_reports(qtbot, worker):
    seen = {}
    gate = threading.Event()

    def job(context):
        seen["thread"] = threading.current_thread()
        context.progress(1, 2, "half")
        context.rows(head_z_row(0))
        gate.wait(10)
        return "value"

    progress, rows = [], []
    worker.progress_changed.connect(lambda *args: progress.append(args))
    worker.rows_ready.connect(rows.append)
    with qtbot.waitSignal(worker.run_finished, timeout=10_000) as finished:
        assert worker.submit(RUN, job)
        assert worker.busy
        qtbot.waitUntil(lambda: bool(progress) and bool(rows), timeout=10_000)
        gate.set()
    assert finished.args == ["value"]
    assert seen["thread"] is not threading.main_thread()
    assert progress[0][:3] == (1, 2, "half") and progress[0][3] >= 0  # an ETA once a unit is done
    assert [(r.array, r.index) for r in rows] == [("patch_head_z", (0,))]
    assert not worker.busy


def test_rows_still_queued_when_a_run_succeeds_are_dropped(qtbot, worker):
    rows = []
    worker.rows_ready.connect(rows.append)

    def job(context):
        for layer in range(50):
            context.rows(head_z_row(layer))
        return "done"

    with qtbot.waitSignal(worker.run_finished, timeout=10_000):
        worker.submit(RUN, job)
    # The rows arrived in one burst after the 50 ms hand-over timer was armed at most once.
    assert len(rows) < 50
    assert [r.index for r in rows] == [(i,) for i in range(len(rows))]


def test_a_cancelled_run_delivers_every_row_it_finished(qtbot, worker):
    rows = []
    worker.rows_ready.connect(rows.append)

    def job(context):
        for layer in range(50):
            context.rows(head_z_row(layer))
        raise Cancelled()

    with qtbot.waitSignal(worker.run_cancelled, timeout=10_000):
        worker.submit(RUN, job)
    assert [r.index for r in rows] == [(i,) for i in range(50)]


def test_a_second_job_is_refused_while_one_runs(qtbot, worker):
    gate = threading.Event()
    refused = []
    worker.job_refused.connect(refused.append)
    with qtbot.waitSignal(worker.run_finished, timeout=10_000):
        assert worker.submit(RUN, lambda context: gate.wait(10))
        assert not worker.submit(RUN, lambda context: None)
        gate.set()
    assert refused and "run is in progress" in refused[0]


def test_expected_errors_become_plain_messages(qtbot, worker):
    def job(context):
        raise ModelLoadError("The model folder /x does not exist.", "Check the path.")

    with qtbot.waitSignal(worker.model_load_failed, timeout=10_000) as failed:
        worker.submit(LOAD_MODEL, job)
    failure = failed.args[0]
    assert failure == JobFailure(LOAD_MODEL, "The model folder /x does not exist.", "Check the path.")


def test_bugs_become_messages_with_details(qtbot, worker):
    def job(context):
        raise ZeroDivisionError("boom")

    with qtbot.waitSignal(worker.run_failed, timeout=10_000) as failed:
        worker.submit(RUN, job)
    failure = failed.args[0]
    assert "ZeroDivisionError: boom" in failure.message and "bug" in failure.hint
    assert "Traceback" in failure.details
    # The worker keeps working after a failure.
    with qtbot.waitSignal(worker.run_finished, timeout=10_000):
        assert worker.submit(RUN, lambda context: 1)


def test_cancel_stops_at_the_next_check(qtbot, worker):
    started = threading.Event()

    def job(context):
        started.set()
        while True:
            context.cancel_token.raise_if_cancelled()
            threading.Event().wait(0.01)

    with qtbot.waitSignal(worker.run_cancelled, timeout=10_000):
        worker.submit(RUN, job)
        assert started.wait(10)
        assert worker.cancel()
    assert not worker.busy


def test_shutdown_during_a_job_cancels_it_and_joins_the_thread(qtbot, worker):
    started = threading.Event()
    stopped = []

    def job(context):
        started.set()
        try:
            while True:
                context.cancel_token.raise_if_cancelled()
                threading.Event().wait(0.01)
        except Cancelled:
            stopped.append(True)
            raise

    worker.submit(RUN, job)
    assert started.wait(10)
    assert worker.shutdown(10_000)
    assert stopped == [True]
    qtbot.waitUntil(lambda: not worker.busy, timeout=10_000)  # the queued "cancelled" report arrived
    refused = []
    worker.job_refused.connect(refused.append)
    assert not worker.submit(RUN, lambda context: None)
    assert refused == ["Not started: the worker has shut down."]


class _Cyclic:
    """Cyclic garbage that records the thread the collector freed it on."""

    freed_on: list = []

    def __init__(self) -> None:
        self.me = self

    def __del__(self) -> None:
        _Cyclic.freed_on.append(threading.current_thread())


def test_cyclic_garbage_is_collected_on_the_gui_thread_while_the_worker_allocates(qtbot, worker):
    # A closed window in a reference cycle, freed by a collection that a worker-thread
    # allocation started, deadlocked against the GUI thread: collections run here instead.
    import gc

    assert not gc.isenabled(), "automatic collection is off while a Worker's threads run"
    _Cyclic.freed_on.clear()
    _Cyclic()
    with qtbot.waitSignal(worker.run_finished, timeout=10_000):
        # Without the guard, these allocations start a collection in the worker thread.
        assert worker.submit(RUN, lambda context: len([[i] for i in range(50_000)]))
    assert _Cyclic.freed_on == [], "collected in the worker thread"
    kept = [[i] for i in range(5_000)]  # enough new objects here for the next tick to collect
    qtbot.waitUntil(lambda: bool(_Cyclic.freed_on), timeout=5_000)
    assert _Cyclic.freed_on == [threading.main_thread()] and len(kept) == 5_000


def test_automatic_collection_comes_back_when_the_last_worker_stops(qtbot):
    import gc

    from ioi_desktop.gui.app import create_application

    create_application()
    assert gc.isenabled()
    first, second = Worker(), Worker()
    assert not gc.isenabled()
    assert first.shutdown(10_000)
    assert not gc.isenabled(), "another worker's threads still run"
    assert second.shutdown(10_000) and first.shutdown(10_000)
    assert gc.isenabled()


def test_a_due_full_collection_waits_while_the_app_is_busy_and_runs_when_idle(qtbot, worker):
    # A full collection takes tens of milliseconds or more on the GUI thread: not while work goes on.
    import gc

    from ioi_desktop.gui.worker import defer_full_collections_while, gui_thread_collector

    collector = gui_thread_collector()
    hold = [True]
    stop = defer_full_collections_while(lambda: bool(hold))
    try:
        kept = [[i] for i in range(3 * collector.MIN_GROWTH)]
        gc.collect(1)  # into the oldest generation, where a long session's objects end up
        before = collector.full_collections
        for _ in range(collector.FULL_CHECK_EVERY):
            collector.collect()
        assert collector.full_collections == before, "a full collection ran while the app was busy"
        hold.clear()
        collector.collect()
        assert collector.full_collections == before + 1 and len(kept) == 3 * collector.MIN_GROWTH
    finally:
        stop()


@pytest.mark.skipif(not hasattr(__import__("os"), "getpriority"), reason="thread priorities are read on Linux")
def test_the_worker_threads_keep_the_gui_threads_priority(qtbot, worker):
    # A lower-priority worker thread holding the GIL is paused by a busy machine while the GUI thread
    # waits for the GIL: the GUI stalled longer, not shorter (see _JobExecutor.execute).
    import os

    def own_priority(_context=None) -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    with qtbot.waitSignal(worker.run_finished, timeout=10_000) as finished:
        assert worker.submit(RUN, own_priority)
    found = []
    worker.prepare("check", own_priority, found.append, found.append)
    qtbot.waitUntil(lambda: bool(found), timeout=10_000)
    assert finished.args == [own_priority()], "the job thread runs at a lower priority than the GUI thread"
    assert found == [own_priority()], "the input thread runs at a lower priority than the GUI thread"
