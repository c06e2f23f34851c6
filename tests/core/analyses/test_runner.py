"""The runner: shared forward passes, reuse across runs, progress, rows, cancellation."""

from __future__ import annotations

import numpy as np
import pytest

from ioi_desktop.core import hooks
from ioi_desktop.core.errors import AnalysisError, Cancelled, PromptError
from ioi_desktop.core.runner import CancelToken, Runner, SharedRuns

from tests.support.analysis_fixtures import notebook_batch, ragged_batch

ANALYSES = ["logit_diff", "logit_lens", "dla", "attention"]


def test_all_analyses_share_one_clean_and_one_corrupt_forward(gpt2_handle):
    runner = Runner()
    batch = notebook_batch(gpt2_handle)
    first = runner.run(gpt2_handle, batch, ANALYSES)
    assert runner.forward_count == 2
    assert first.meta["cached"] == []
    again = runner.run(gpt2_handle, batch, ANALYSES)
    assert runner.forward_count == 2
    assert again.meta["cached"] == ANALYSES
    for name in ANALYSES:
        assert again[name] is first[name]
    # Other options recompute that analysis but reuse the cached runs.
    changed = runner.run(gpt2_handle, batch, ["logit_lens"], {"logit_lens": {"top_k": 3}})
    assert runner.forward_count == 2
    assert changed["logit_lens"].arrays["logit_lens_grid_top_ids"].shape[-1] == 3
    # Another prompt set needs new forward passes.
    runner.run(gpt2_handle, ragged_batch(gpt2_handle), ["logit_diff"])
    assert runner.forward_count == 4


def test_every_registered_analysis_shares_the_two_forwards(gpt2_handle):
    from ioi_desktop.core.analyses import analysis_names

    runner = Runner()
    results = runner.run(gpt2_handle, notebook_batch(gpt2_handle))
    assert results.analyses == analysis_names()
    assert runner.forward_count == 2
    for name, array in results.iter_arrays():
        assert array.dtype in (np.float32, np.int32) and array.flags.c_contiguous, name
        assert np.isfinite(array).all(), name


def test_analyses_without_shared_hooks_run_no_forward(gpt2_handle):
    runner = Runner()
    runner.run(gpt2_handle, notebook_batch(gpt2_handle), ["head_scores"], {"head_scores": {"seq_len": 8}})
    assert runner.forward_count == 0


def test_missing_hook_costs_exactly_one_extra_forward_of_that_run(gpt2_handle):
    runs = SharedRuns(gpt2_handle.model, notebook_batch(gpt2_handle))
    runs.declare({hooks.hook_name("resid_pre", 0)})
    cache = runs.cache("clean")
    assert runs.forward_count == 1 and hooks.hook_name("resid_pre", 0) in cache
    runs.require("clean", {hooks.hook_name("z", 1)})
    assert runs.forward_count == 2
    assert runs.cached_names("clean") == {hooks.hook_name("resid_pre", 0), hooks.hook_name("z", 1)}
    runs.require("clean", {hooks.hook_name("z", 1), hooks.hook_name("resid_pre", 0)})
    runs.logits("clean")
    assert runs.forward_count == 2
    runs.logits("corrupt")
    assert runs.forward_count == 3
    # Logits were kept from the first forward and match a plain run.
    import torch

    with torch.no_grad():
        expected = gpt2_handle.model(torch.as_tensor(notebook_batch(gpt2_handle).clean_tokens))
    assert torch.allclose(runs.logits("clean"), expected, atol=1e-5)


def test_batched_forward_equals_one_forward(gpt2_handle):
    batch = notebook_batch(gpt2_handle)
    whole = Runner().run(gpt2_handle, batch, ["dla", "logit_diff"])
    split = Runner().run(gpt2_handle, batch, ["dla", "logit_diff"], batch_size=3)
    for name, array in whole.iter_arrays():
        np.testing.assert_allclose(split.array(name), array, atol=1e-5)


def test_progress_rows_and_results_arrive_in_order(gpt2_handle):
    events, rows, finished = [], [], []
    results = Runner().run(
        gpt2_handle, notebook_batch(gpt2_handle), ["logit_diff", "logit_lens"],
        on_progress=events.append, on_rows=rows.append, on_result=lambda r: finished.append(r.name),
    )
    done = [event.done for event in events]
    assert done == sorted(done)
    assert events[-1].done == events[-1].total and events[-1].fraction == 1.0
    assert finished == ["logit_diff", "logit_lens"]
    grid_rows = [event for event in rows if event.array == "logit_lens_grid_logit_diff"]
    assert [event.index for event in grid_rows] == [(i,) for i in range(gpt2_handle.info.n_layers + 1)]
    grid = results.array("logit_lens_grid_logit_diff")
    for event in grid_rows:
        np.testing.assert_array_equal(event.values, grid[event.index])
    assert results.meta["timings"].keys() >= {"logit_diff", "logit_lens", "forward"}


def test_cancelling_stops_within_one_unit(gpt2_handle):
    token = CancelToken()
    events, finished = [], []

    def on_progress(event):
        events.append(event)
        if event.analysis == "logit_lens" and event.analysis_done == 2:
            token.cancel()

    with pytest.raises(Cancelled):
        Runner().run(gpt2_handle, notebook_batch(gpt2_handle), ["logit_diff", "logit_lens", "dla"],
                     on_progress=on_progress, on_result=lambda r: finished.append(r.name), cancel_token=token)
    cancelled_at = next(i for i, e in enumerate(events) if e.analysis == "logit_lens" and e.analysis_done == 2)
    assert events[cancelled_at + 1:] == []
    assert finished == ["logit_diff"]


def test_cancelled_run_leaves_the_runner_usable(gpt2_handle):
    runner = Runner()
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        runner.run(gpt2_handle, notebook_batch(gpt2_handle), ["dla"], cancel_token=token)
    results = runner.run(gpt2_handle, notebook_batch(gpt2_handle), ["dla"])
    assert "dla" in results


def test_bad_requests_raise_clear_errors(gpt2_handle):
    batch = notebook_batch(gpt2_handle)
    with pytest.raises(AnalysisError, match="no analysis called 'nope'"):
        Runner().run(gpt2_handle, batch, ["nope"])
    with pytest.raises(AnalysisError, match=r"option logit_diff.top_k must be a whole number from 1 to 100, not 0\."):
        Runner().run(gpt2_handle, batch, ["logit_diff"], {"logit_diff": {"top_k": 0}})
    with pytest.raises(AnalysisError, match="batch size"):
        Runner().run(gpt2_handle, batch, ["logit_diff"], batch_size=0)
    bad = type(batch)(**{**vars(batch), "correct_ids": batch.correct_ids * 0 + gpt2_handle.info.d_vocab})
    with pytest.raises(PromptError, match="vocabulary"):
        Runner().run(gpt2_handle, bad, ["logit_diff"])


def test_head_scores_match_an_explicit_count(gpt2_handle):
    """The notebook's convention (no BOS, ids from [100, 20000)) gives the demo's diagonal means."""
    import torch

    from ioi_desktop.core.analyses.head_scores import repeated_random_tokens

    options = {"head_scores": {"seq_len": 12, "batch": 3, "seed": 7, "token_pool": "id_range", "prepend_bos": "no"}}
    result = Runner().run(gpt2_handle, notebook_batch(gpt2_handle), ["head_scores"], options)["head_scores"]
    tokens = repeated_random_tokens(gpt2_handle.info.d_vocab, 12, 3, 7)
    assert torch.equal(tokens[:, :12], tokens[:, 12:]) and tokens.shape == (3, 24)
    with torch.no_grad():
        _, cache = gpt2_handle.model.run_with_cache(tokens)
    n_layers, n_heads, n = gpt2_handle.info.n_layers, gpt2_handle.info.n_heads, 12
    for layer in range(n_layers):
        pattern = cache["pattern", layer].numpy()
        for head in range(n_heads):
            prev = np.mean([pattern[b, head, q, q - 1] for b in range(3) for q in range(1, 2 * n)])
            dup = np.mean([pattern[b, head, q, q - n] for b in range(3) for q in range(n, 2 * n)])
            ind = np.mean([pattern[b, head, q, q - n + 1] for b in range(3) for q in range(n - 1, 2 * n)])
            assert abs(result.arrays["head_score_prev"][layer, head] - prev) <= 1e-5
            assert abs(result.arrays["head_score_dup"][layer, head] - dup) <= 1e-5
            assert abs(result.arrays["head_score_induction"][layer, head] - ind) <= 1e-5
    again = Runner().run(gpt2_handle, notebook_batch(gpt2_handle), ["head_scores"], options)["head_scores"]
    np.testing.assert_array_equal(again.arrays["head_score_induction"], result.arrays["head_score_induction"])
    assert result.meta["seq_len"] == 12 and result.meta["seed"] == 7
    assert result.meta["prepend_bos"] is False and result.meta["token_pool"] == "id_range"
