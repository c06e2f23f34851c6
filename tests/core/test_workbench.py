"""The Qt-free workbench: state, typed events, the results store with partial grids and provenance."""

from __future__ import annotations

import numpy as np
import pytest

from ioi_desktop.core.analyses import head_scores, logit_diff, patching
from ioi_desktop.core.analyses.base import AnalysisOptions
from ioi_desktop.core.pairs import notebook_prompt_set
from ioi_desktop.core.runner import RowsEvent
from ioi_desktop.core.workbench import (
    PromptSetChanged,
    ResultAdded,
    RowsAdded,
    RunEnded,
    RunStarted,
    SettingsChanged,
    Workbench,
)


class Recorder:
    def __init__(self, bench: Workbench, *types: type) -> None:
        self.events: list = []
        for event_type in types:
            bench.hub.subscribe(event_type, self.on_event)

    def on_event(self, event) -> None:
        self.events.append(event)


def test_options_are_typed_and_settings_round_trip():
    bench = Workbench()
    seen = Recorder(bench, SettingsChanged)
    bench.set_options("patching", patching.Options(sweeps=("head_z",)))
    bench.set_run_settings(analyses=["patching", "logit_diff"], batch_size=4)
    with pytest.raises(TypeError):
        bench.set_options("patching", head_scores.Options())
    with pytest.raises(ValueError):
        bench.set_run_settings(batch_size=0)
    assert [e.analysis for e in seen.events] == ["patching", None]
    assert bench.analyses == ("logit_diff", "patching")  # display order
    other = Workbench()
    other.apply_settings(bench.settings())
    assert other.settings() == bench.settings()
    assert all(isinstance(o, AnalysisOptions) for o in other.options.values())


def test_settings_of_the_previous_version_are_read_and_bad_values_ignored():
    bench = Workbench()
    bench.apply_settings({"analyses": ["dla", "nope"],
                          "options": {"sweeps": ["head_z", "resid_pre"], "batch_size": 8, "top_k": 7,
                                      "head_seed": 3, "head_seq_len": None}})
    assert bench.analyses == ("dla",) and bench.batch_size == 8
    assert bench.options["patching"].sweeps == ("head_z", "resid_pre")
    assert bench.options["logit_lens"].top_k == 7 and bench.options["head_scores"].seed == 3
    bench.apply_settings({"options": {"logit_diff": {"top_k": 0, "bogus": 1}}})
    assert bench.options["logit_diff"].top_k == 5


def _rows(analysis, array, row, values, shape, result_type):
    return RowsEvent(analysis, array, (row,), values, shape, result_type)


def test_store_keeps_typed_partial_grids_then_the_finished_result_with_provenance():
    bench = Workbench()
    bench.set_prompt_set(notebook_prompt_set())
    seen = Recorder(bench, RunStarted, RowsAdded, ResultAdded, RunEnded)
    request = bench.run_request()
    bench.begin_run(request)
    grid_row = np.arange(4, dtype=np.float32)
    bench.results.add_rows(_rows("patching", "patch_head_z", 1, grid_row, (3, 4), patching.Result))
    partial = bench.results.partial("patch_head_z")
    assert partial.values.dtype == np.float32 and partial.done.tolist() == [False, True, False]
    np.testing.assert_array_equal(partial.values[1], grid_row)
    result = logit_diff.Result(logit_diff_clean=np.ones(8, dtype=np.float32))
    bench.results.add_result(result)
    # Rows of an analysis that already finished are ignored (the worker may deliver them late).
    bench.results.add_rows(_rows("logit_diff", "logit_diff_top_ids_clean", 0, np.zeros(5, np.int32),
                                 (8, 5), logit_diff.Result))
    assert bench.results.partial("logit_diff_top_ids_clean") is None
    bench.results.end("cancelled")
    kinds = [type(e).__name__ for e in seen.events]
    assert kinds == ["RunStarted", "RowsAdded", "ResultAdded", "RunEnded"]
    ended = seen.events[-1]
    assert ended.status == "cancelled" and ended.finished == ("logit_diff",) and "patching" in ended.unfinished
    assert bench.results.run_results()["logit_diff"] is result
    provenance = bench.results.provenance("logit_diff")
    assert provenance.n_pairs == 8 and provenance.options == {"top_k": 5, "batch_size": None}
    assert provenance.prompt_hash == bench.provenance("logit_diff").prompt_hash


def test_int_partial_grids_are_filled_with_minus_one():
    bench = Workbench()
    bench.set_prompt_set(notebook_prompt_set())
    bench.begin_run(bench.run_request())
    ids = np.full((8, 15, 5), 3, dtype=np.int32)
    from ioi_desktop.core.analyses import logit_lens

    bench.results.add_rows(_rows("logit_lens", "logit_lens_grid_top_ids", 0, ids, (5, 8, 15, 5), logit_lens.Result))
    grid = bench.results.partial("logit_lens_grid_top_ids")
    assert grid.values.dtype == np.int32 and (grid.values[1:] == -1).all() and (grid.values[0] == 3).all()


def test_rows_that_do_not_fit_their_type_are_refused():
    with pytest.raises(TypeError, match="float32"):
        patching.Result.check_rows("patch_head_z", (0,), np.zeros(4), (3, 4))
    with pytest.raises(ValueError, match="do not fit"):
        patching.Result.check_rows("patch_head_z", (3,), np.zeros(4, np.float32), (3, 4))
    with pytest.raises(KeyError):
        patching.Result.check_rows("patch_head_w", (0,), np.zeros(4, np.float32), (3, 4))


def test_prompt_set_and_selection_events():
    bench = Workbench()
    seen = Recorder(bench, PromptSetChanged)
    prompts = notebook_prompt_set()
    bench.set_prompt_set(prompts)
    assert seen.events == [PromptSetChanged(prompts)]


def test_a_run_that_keeps_others_replaces_only_its_own_results():
    from ioi_desktop.core.workbench import RunRequest

    bench = Workbench()
    bench.set_prompt_set(notebook_prompt_set())
    bench.begin_run(bench.run_request())
    kept = logit_diff.Result(logit_diff_clean=np.ones(8, dtype=np.float32))
    bench.results.add_result(kept)
    bench.results.end("finished")
    seen = Recorder(bench, RunStarted)
    options = bench.options["patching"]
    bench.begin_run(RunRequest(("patching",), {"patching": options}, None), keep_others=True)
    assert seen.events == [RunStarted(("patching",), True)]
    assert bench.results.run_results()["logit_diff"] is kept
    bench.begin_run(bench.run_request())
    assert bench.results.run_results() is None or "logit_diff" not in bench.results.run_results().results


def test_sessions_keep_the_pinned_head_set():
    bench = Workbench()
    bench.set_prompt_set(notebook_prompt_set())
    bench.selection.toggle_pin(2, 1)
    bench.selection.toggle_pin(0, 3)
    session = bench.session({})
    assert session.selection["pinned"] == [[2, 1], [0, 3]]
    other = Workbench()
    other.restore(session)
    assert other.selection.pinned == ((2, 1), (0, 3))


def test_pinned_heads_and_their_positions_are_shared_state_saved_in_sessions():
    from ioi_desktop.core.session import Session

    bench = Workbench()
    bench.set_prompt_set(notebook_prompt_set())
    seen = []
    bench.selection.subscribe(lambda _selection, changed: seen.append(set(changed)))
    bench.selection.set_pinned([(3, 3), (2, 1)])
    assert bench.selection.set_pinned_positions("S2") == {"pinned_positions"}
    assert bench.selection.set_pinned_positions("S2") == frozenset()
    with pytest.raises(ValueError):
        bench.selection.set_pinned_positions("  ")
    assert seen == [{"pinned"}, {"pinned_positions"}]
    saved = bench.session(layout={})
    assert saved.selection["pinned"] == [[3, 3], [2, 1]] and saved.selection["pinned_positions"] == "S2"
    other = Workbench()
    other.restore(Session(model_spec={}, prompt_set=saved.prompt_set, selection=saved.selection))
    assert other.selection.pinned == ((3, 3), (2, 1)) and other.selection.pinned_positions == "S2"
    # A session without them (older version) keeps the defaults.
    other.restore(Session(model_spec={}, prompt_set=saved.prompt_set, selection={"prompt": 0}))
    assert other.selection.pinned == () and other.selection.pinned_positions == "end"
