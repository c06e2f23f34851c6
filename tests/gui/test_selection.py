"""The shared selection model (Qt-free): change notification, weak observers, validation."""

from __future__ import annotations

import gc
import sys

import numpy as np
import pytest

from ioi_desktop.core.selection import Selection, SelectionModel


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[Selection, frozenset]] = []

    def on_changed(self, selection: Selection, changed: frozenset) -> None:
        self.calls.append((selection, changed))


def test_selection_module_imports_neither_qt_nor_torch():
    import subprocess

    code = (
        "import sys; import ioi_desktop.core.selection; "
        "bad = [m for m in ('torch', 'PySide6', 'pyqtgraph') if m in sys.modules]; "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_update_notifies_once_with_changed_fields():
    model = SelectionModel()
    recorder = _Recorder()
    model.subscribe(recorder.on_changed)
    assert model.select_head(9, 9) == {"layer", "head"}
    assert recorder.calls == [(Selection(prompt=0, layer=9, head=9), frozenset({"layer", "head"}))]
    # Same layer, new position: only position is reported as changed.
    model.select_cell(9, 14)
    assert recorder.calls[-1][1] == {"position"}
    assert model.current == Selection(prompt=0, layer=9, head=9, position=14)


def test_setting_an_unchanged_value_notifies_nobody():
    model = SelectionModel(Selection(prompt=2, layer=1, head=3))
    recorder = _Recorder()
    model.subscribe(recorder.on_changed)
    assert model.update(prompt=2, layer=1) == frozenset()
    assert model.select_head(1, 3) == frozenset()
    assert recorder.calls == []


def test_observer_echoing_the_selection_back_does_not_loop():
    model = SelectionModel()
    calls = []

    def echo(selection, changed):
        calls.append(changed)
        model.select_head(selection.layer, selection.head)

    model.subscribe(echo)
    model.select_head(4, 11)
    assert calls == [frozenset({"layer", "head"})]


def test_bound_method_observers_are_weak_and_unsubscribe_works():
    model = SelectionModel()
    recorder = _Recorder()
    model.subscribe(recorder.on_changed)
    del recorder
    gc.collect()
    model.select_prompt(3)  # must not raise or call a dead observer

    kept = _Recorder()
    unsubscribe = model.subscribe(kept.on_changed)
    model.select_prompt(4)
    unsubscribe()
    model.select_prompt(5)
    assert [c[0].prompt for c in kept.calls] == [4]


def test_lambda_observers_are_kept_alive():
    model = SelectionModel()
    seen = []
    model.subscribe(lambda selection, changed: seen.append(selection.head))
    gc.collect()
    model.select_head(0, 5)
    assert seen == [5]


def test_a_failing_observer_does_not_starve_the_others():
    model = SelectionModel()
    recorder = _Recorder()

    def broken(selection, changed):
        raise RuntimeError("panel bug")

    model.subscribe(broken)
    model.subscribe(recorder.on_changed)
    with pytest.raises(RuntimeError, match="panel bug"):
        model.select_prompt(1)
    assert len(recorder.calls) == 1
    assert model.prompt == 1


def test_values_are_validated():
    model = SelectionModel()
    with pytest.raises(ValueError):
        model.select_head(-1, 0)
    with pytest.raises(TypeError):
        model.update(head=True)
    with pytest.raises(TypeError):
        model.update(prompt=None)
    with pytest.raises(TypeError):
        model.update(colour=1)
    with pytest.raises(TypeError):
        model.update(layer=1.5)
    # numpy integers (what click handlers get from arrays) are accepted as ints.
    model.select_head(np.int64(7), np.int32(3))
    assert model.current.layer == 7 and type(model.current.layer) is int


def test_clear_and_key_position():
    model = SelectionModel()
    model.update(prompt=3, layer=2, head=1)
    assert model.select_query(5, key_pos=2) == {"position", "key_pos"}
    assert model.key_pos == 2 and model.position == 5
    assert model.clear() == {"prompt", "layer", "head", "position", "key_pos"}
    assert model.current == Selection()


def test_pinned_heads_toggle_notify_once_and_keep_their_order():
    model = SelectionModel()
    recorder = _Recorder()
    model.subscribe(recorder.on_changed)
    assert model.toggle_pin(9, 9) == frozenset({"pinned"})
    model.toggle_pin(np.int64(9), 6)
    assert model.pinned == ((9, 9), (9, 6)) and model.pinned_text() == "9.9,9.6"
    assert model.set_pinned([(9, 9), (9, 6), (9, 9)]) == frozenset()  # the same set: nobody notified
    model.toggle_pin(9, 9)
    assert model.pinned == ((9, 6),)
    assert [changed for _selection, changed in recorder.calls] == [frozenset({"pinned"})] * 3
    assert (model.layer, model.head) == (None, None)  # pinning does not select
    model.clear_pinned()
    assert model.pinned == ()
    with pytest.raises(ValueError):
        model.toggle_pin(-1, 0)
    with pytest.raises(TypeError):
        model.set_pinned([(True, 0)])
