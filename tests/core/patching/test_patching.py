"""Exact activation patching against transformer_lens.patching, on both engines."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ioi_desktop.core.analyses import patching
from ioi_desktop.core.errors import AnalysisError, Cancelled, DeviceError

from tests.support.patching_helpers import (
    SWEEP_NAMES,
    RecordingProgress,
    context,
    notebook_pairs,
    run_with,
    tokenized_pairs,
)

TOLERANCE = 1e-5


def _run(model, batch, **options):
    progress = RecordingProgress()
    ctx = context(model, batch, options.pop("batch_size", None))
    return run_with(patching, ctx, options, progress), progress, ctx


@pytest.fixture(scope="module")
def results(tiny):
    torch.set_num_threads(1)
    return {engine: _run(tiny.model, tiny.batch, engine=engine)[0] for engine in ("auto", "bridge")}


def _max_difference(result, references) -> dict[str, float]:
    worst = {}
    for sweep in SWEEP_NAMES:
        raw = result.arrays[patching.SWEEPS[sweep].array + "_raw"]
        worst[sweep] = max(abs(float(raw[cell]) - value) for cell, value in references[sweep].items())
    return worst


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["auto", "bridge"])
def test_every_grid_matches_transformer_lens(references, results, engine):
    result = results[engine]
    assert result.meta["engine"] == ("fast" if engine == "auto" else "bridge")
    worst = _max_difference(result, references)
    assert max(worst.values()) <= TOLERANCE, worst
    # The references are not trivially equal to the corrupted baseline.
    spread = max(abs(v - result.meta["corrupt_logit_diff"]) for ref in references.values() for v in ref.values())
    assert spread > 100 * TOLERANCE


def test_normalized_scores_follow_the_demo(tiny, results):
    result = results["auto"]
    clean, corrupt = result.meta["clean_logit_diff"], result.meta["corrupt_logit_diff"]
    for sweep in SWEEP_NAMES:
        name = patching.SWEEPS[sweep].array
        expected = (result.arrays[name + "_raw"] - corrupt) / (clean - corrupt)
        np.testing.assert_allclose(result.arrays[name], expected, rtol=1e-5, atol=1e-6)
        assert result.arrays[name].dtype == np.float32 and result.arrays[name].flags.c_contiguous
        assert result.axes[name] == patching.SWEEPS[sweep].axes
    n_pos = tiny.batch.clean_tokens.shape[1]
    assert result.arrays["patch_resid_pre"].shape == (2, n_pos)
    assert result.arrays["patch_head_z"].shape == (2, 4)
    assert result.arrays["patch_head_z_by_pos"].shape == (2, n_pos, 4)
    assert result.labels["pos"][tiny.first_changed] == f"{tiny.first_changed}: {tiny.batch.str_tokens[0][tiny.first_changed]}"
    assert result.meta["position_alignment"] == "absolute"


def test_cells_before_the_first_corrupted_token_are_exactly_zero(tiny, results):
    first = tiny.first_changed
    for engine, result in results.items():
        for name in ("patch_resid_pre", "patch_attn_out", "patch_mlp_out", "patch_head_z_by_pos"):
            assert not result.arrays[name][:, :first].any(), (engine, name)
        # ... and the first corrupted position of layer 0 does change the answer.
        assert result.arrays["patch_resid_pre"][0, first] != 0


def test_rows_stream_in_layer_order_and_progress_adds_up(tiny):
    result, progress, _ctx = _run(tiny.model, tiny.batch, sweeps=["head_z", "resid_pre"])
    assert [(a, i) for a, i, _v in progress.received] == [
        ("patch_head_z", 0), ("patch_head_z", 1), ("patch_resid_pre", 0), ("patch_resid_pre", 1)
    ]
    for array, layer, values in progress.received:
        np.testing.assert_array_equal(values, result.arrays[array][layer])
    assert progress.total == progress.done == 4
    assert set(result.arrays) == {"patch_head_z", "patch_head_z_raw", "patch_resid_pre", "patch_resid_pre_raw"}


def test_cancelling_stops_within_one_layer(tiny):
    progress = RecordingProgress(cancel_after=1)
    with pytest.raises(Cancelled):
        run_with(patching, context(tiny.model, tiny.batch), {"sweeps": ["head_z", "head_v"]}, progress)
    assert progress.done == 1
    assert len(progress.received) == 1


def test_cached_runs_are_reused(tiny):
    ctx = context(tiny.model, tiny.batch)
    options = patching.Options(sweeps=("head_z", "mlp_out"))
    ctx.runs.declare(patching.hooks_needed(ctx, options))
    patching.run(ctx, options, RecordingProgress())
    assert ctx.runs.forward_count == 2  # one clean, one corrupted; the engine runs no full forward


def test_small_batches_give_the_same_grids(tiny, results):
    result, _progress, _ctx = _run(tiny.model, tiny.batch, sweeps=["head_z_by_pos", "head_k"], batch_size=1)
    for name in ("patch_head_z_by_pos_raw", "patch_head_k_raw"):
        np.testing.assert_allclose(result.arrays[name], results["auto"].arrays[name], atol=1e-6)
    assert result.meta["settings_per_pass"] == 1


def test_out_of_memory_halves_the_chunk():
    """The patching engine halves its chunk on out-of-memory; only one setting at a time failing is an error."""
    from ioi_desktop.core.engine.batching import map_chunks

    sizes = []

    def compute(part):
        sizes.append(part.stop - part.start)
        if part.stop - part.start > 2:
            raise torch.OutOfMemoryError("simulated")
        return torch.arange(part.start, part.stop)

    values, chunk = map_chunks(compute, 7, 8)
    assert values.tolist() == list(range(7)) and chunk == 2
    assert sizes[:3] == [7, 4, 2]

    def always_fails(part):
        raise torch.OutOfMemoryError("simulated")

    with pytest.raises(DeviceError, match="ran out of memory while patching even one setting at a time"):
        map_chunks(always_fails, 3, 1)


def test_bad_options_raise_analysis_errors(tiny):
    with pytest.raises(AnalysisError, match="option patching.sweeps has 'head_w', which is not one of resid_pre"):
        _run(tiny.model, tiny.batch, sweeps=["head_w"])
    with pytest.raises(AnalysisError, match="option patching.engine must be one of auto, fast, bridge, not 'warp'"):
        _run(tiny.model, tiny.batch, sweeps=["head_z"], engine="warp")


def _unequal_pairs():
    pairs = notebook_pairs()[:4]
    longer = [
        (c.replace("went to the", "went to the big"), k.replace("went to the", "went to the big"), a, b)
        for c, k, a, b in notebook_pairs()[4:]
    ]
    return pairs + longer


@pytest.mark.parametrize("engine", ["auto", "bridge"])
def test_unequal_lengths_patch_each_prompt_at_its_own_role_position(tiny, engine):
    from ioi_desktop.core.hooks import hook_name

    from tests.support.patching_helpers import logit_diff_metric

    model, batch = tiny.model, tokenized_pairs(_unequal_pairs())
    assert not batch.equal_length
    result, _p, ctx = _run(model, batch, sweeps=["resid_pre", "head_z_by_pos"], engine=engine)
    assert result.meta["position_alignment"] == "roles"
    roles = result.labels["pos"]
    assert roles == list(batch.roles)
    clean_cache = ctx.runs.cache("clean")
    corrupt = torch.as_tensor(batch.corrupt_tokens)
    metric = logit_diff_metric(batch)
    prompts = torch.arange(len(batch.end_pos))
    for role in ("S2", "END"):
        where = torch.as_tensor(batch.roles[role])
        for layer in range(int(model.cfg.n_layers)):
            name = hook_name("resid_pre", layer)

            def patch_resid(act, hook, name=name, where=where):
                act = act.clone()
                act[prompts, where] = clean_cache[name][prompts, where]
                return act

            with torch.no_grad():
                expected = float(metric(model.run_with_hooks(corrupt, fwd_hooks=[(name, patch_resid)])))
            got = result.arrays["patch_resid_pre_raw"][layer, roles.index(role)]
            assert abs(got - expected) <= TOLERANCE
        head_name = hook_name("z", 1)

        def patch_z(act, hook, where=where):
            act = act.clone()
            act[prompts, where, 2] = clean_cache[head_name][prompts, where, 2]
            return act

        with torch.no_grad():
            expected = float(metric(model.run_with_hooks(corrupt, fwd_hooks=[(head_name, patch_z)])))
        assert abs(result.arrays["patch_head_z_by_pos_raw"][1, roles.index(role), 2] - expected) <= TOLERANCE


def test_models_outside_the_fast_family_use_the_bridge_engine(tiny, monkeypatch):
    from ioi_desktop.core.engine import fast_gpt2

    monkeypatch.setattr(fast_gpt2, "unsupported_reason", lambda model: "architecture X is not in the family")
    import ioi_desktop.core.engine as engine_package

    monkeypatch.setattr(engine_package, "unsupported_reason", fast_gpt2.unsupported_reason)
    result, _p, _c = _run(tiny.model, tiny.batch, sweeps=["head_z"])
    assert result.meta["engine"] == "bridge"
    assert "architecture X" in result.meta["engine_reason"]
    with pytest.raises(AnalysisError, match="fast patching engine cannot run"):
        _run(tiny.model, tiny.batch, sweeps=["head_z"], engine="fast")


def test_a_failed_self_check_falls_back_to_the_bridge_engine(tiny, monkeypatch):
    from ioi_desktop.core.engine import FastGPT2Engine

    monkeypatch.setattr(FastGPT2Engine, "self_check", lambda self: "the fast engine's forward pass differs")
    result, _p, _c = _run(tiny.model, tiny.batch, sweeps=["head_v"])
    assert result.meta["engine"] == "bridge"


def test_the_fast_engine_reproduces_the_corrupted_run(tiny):
    from ioi_desktop.core.engine import FastGPT2Engine

    ctx = context(tiny.model, tiny.batch)
    inputs, _clean = patching.build_inputs(tiny.model, tiny.batch, ctx.runs, {"z"})
    assert FastGPT2Engine(tiny.model, inputs).self_check(tolerance=1e-6) is None
