"""The fast engine beyond GPT-2: every grid on tiny random models of each rotary / parallel family
against ``transformer_lens.patching``, the engine actually selected, and the self-check's fallback."""

from __future__ import annotations

import pytest
import torch

from ioi_desktop.core.analyses import patching

from tests.support.patching_helpers import (
    SWEEP_NAMES,
    RecordingProgress,
    context,
    notebook_pairs,
    tl_reference_cells,
    tokenized_pairs,
)
from tests.support.rotary_models import FAMILIES, random_bridge

TOLERANCE = 1e-5
# k and v are patched per key-value head (TransformerLens's convention for grouped-query
# attention), so their grids have fewer heads than the others and run as their own Result.
KV_SWEEPS = ("head_v", "head_k")
# TransformerLens discards edits to hook_pattern on GPT-J (its pattern is fired after HF's attention
# used it): the analysis refuses that grid, on every engine, and there is no reference to compare.
PATTERN_REFUSED = {"gptj"}
NAMES = {
    "llama": "Llama", "mistral": "Mistral", "qwen2": "Qwen2", "qwen3": "Qwen3", "gemma": "Gemma",
    "gemma2": "Gemma 2", "gemma3": "Gemma 3", "phi3": "Phi-3", "neox": "GPT-NeoX",
    "gptj": "GPT-J",
}


@pytest.fixture(scope="module")
def batch():
    return tokenized_pairs(notebook_pairs())


@pytest.fixture(scope="module")
def bridges(tmp_path_factory):
    torch.set_num_threads(1)
    return {family: random_bridge(family, tmp_path_factory.mktemp(family)) for family in FAMILIES}


def _run(model, batch, sweeps, engine="auto"):
    return patching.run(context(model, batch), patching.Options(sweeps=tuple(sweeps), engine=engine),
                        RecordingProgress())


def test_every_family_has_a_model_here():
    assert set(FAMILIES) == set(NAMES)


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_every_grid_matches_transformer_lens(bridges, batch, family):
    model = bridges[family]
    results = [_run(model, batch, [s for s in SWEEP_NAMES if s not in KV_SWEEPS]), _run(model, batch, KV_SWEEPS)]
    for result in results:
        assert result.meta["engine"] == "fast", result.meta["engine_reason"]
        assert result.meta["engine_reason"] == f"the model is in the fast engine's {NAMES[family]} family"
    refused = results[0].meta.get("refused") or {}
    if family in PATTERN_REFUSED:
        assert set(refused) == {"head_pattern"} and "discards edits to hook_pattern" in refused["head_pattern"]
    else:
        assert not refused, refused
    arrays = {**results[0].arrays, **results[1].arrays}
    corrupt = results[0].meta["corrupt_logit_diff"]
    with torch.no_grad():
        _logits, clean_cache = model.run_with_cache(torch.as_tensor(batch.clean_tokens))
    first = int((batch.clean_tokens != batch.corrupt_tokens).argmax(axis=1).min())
    positions = list(range(first - 1, batch.clean_tokens.shape[1]))
    worst, spread = {}, 0.0
    for sweep in (s for s in SWEEP_NAMES if s not in refused):
        reference = tl_reference_cells(model, batch, sweep, clean_cache, positions)
        raw = arrays[patching.SWEEPS[sweep].array + "_raw"]
        worst[sweep] = max(abs(float(raw[cell]) - value) for cell, value in reference.items())
        spread = max(spread, max(abs(value - corrupt) for value in reference.values()))
    assert max(worst.values()) <= TOLERANCE, worst
    # The references are not trivially the corrupted baseline.
    assert spread > 100 * TOLERANCE


@pytest.mark.parametrize("family", FAMILIES)
def test_the_fast_engine_reproduces_the_corrupted_run(bridges, batch, family):
    from ioi_desktop.core.engine import FastBlocksEngine, select_engine

    model = bridges[family]
    ctx = context(model, batch)
    inputs, _clean = patching.build_inputs(model, batch, ctx.runs, {"z"})
    engine, reason = select_engine(model, inputs)
    assert isinstance(engine, FastBlocksEngine), reason
    assert engine.self_check(tolerance=1e-6) is None


def test_grouped_query_models_patch_k_and_v_per_key_value_head(bridges, batch):
    result = _run(bridges["llama"], batch, KV_SWEEPS)
    assert result.arrays["patch_head_v_raw"].shape == (2, 2)  # 4 query heads share 2 key-value heads
    assert result.arrays["patch_head_k_raw"].shape == (2, 2)


def test_a_model_the_engine_does_not_reproduce_falls_back_with_the_reason(bridges, batch, monkeypatch):
    """A modelling difference (here: a sliding window the model does not have) fails the
    self-check, and the sweep runs on the bridge engine, saying why."""
    from ioi_desktop.core.engine import fast_blocks

    monkeypatch.setattr(fast_blocks, "sliding_window", lambda model, layer: 2)
    result = _run(bridges["llama"], batch, ["head_z"])
    assert result.meta["engine"] == "bridge"
    assert result.meta["engine_reason"].startswith("the fast engine's forward pass differs from the model's by")
    from ioi_desktop.core.errors import AnalysisError

    with pytest.raises(AnalysisError, match="fast patching engine cannot run this model: the fast engine's forward"):
        _run(bridges["llama"], batch, ["head_z"], engine="fast")


def test_architectures_outside_the_families_say_which_families_there_are(bridges):
    from ioi_desktop.core.engine import fast_blocks

    from types import SimpleNamespace

    mamba = SimpleNamespace(cfg=SimpleNamespace(architecture="MambaForCausalLM"))
    reason = fast_blocks.unsupported_reason(mamba)
    assert reason.startswith("architecture MambaForCausalLM is not in the fast engine's families (GPT-2, Llama,")
    assert fast_blocks.unsupported_reason(bridges["llama"]) is None


def test_rotary_tables_come_from_one_forward_when_the_cached_runs_lack_them(bridges, batch):
    """Inputs cached without the rotary hooks (e.g. by another caller) still give an exact engine."""
    import dataclasses

    from ioi_desktop.core.engine import FastBlocksEngine
    from ioi_desktop.core.engine.inputs import ROTARY_HOOKS

    model = bridges["gemma3"]  # local and global rotary bases
    ctx = context(model, batch)
    inputs, _clean = patching.build_inputs(model, batch, ctx.runs, {"z"})

    def without_rotary(name):
        if name.endswith(ROTARY_HOOKS):
            raise KeyError(name)
        return inputs.corrupt(name)

    bare = dataclasses.replace(inputs, corrupt=without_rotary)
    engine = FastBlocksEngine(model, bare)
    assert engine.self_check(tolerance=1e-6) is None
    reference = FastBlocksEngine(model, inputs)
    for layer in range(int(model.cfg.n_layers)):
        assert torch.equal(engine.cos[layer], reference.cos[layer])
        assert torch.equal(engine.sin[layer], reference.sin[layer])


def test_gptj_rotates_adjacent_pairs(bridges, batch, monkeypatch):
    """GPT-J's rotary pairs are adjacent dimensions (HF's rotate_every_two): the rotate-half
    convention of the other families does not reproduce its corrupted run."""
    from ioi_desktop.core.engine import FastBlocksEngine

    model = bridges["gptj"]
    inputs, _clean = patching.build_inputs(model, batch, context(model, batch).runs, {"z"})
    engine = FastBlocksEngine(model, inputs)
    assert engine.every_two and engine.self_check(tolerance=1e-6) is None
    rotate_half = FastBlocksEngine(model, inputs)
    monkeypatch.setattr(rotate_half, "every_two", False)
    reason = rotate_half.self_check(tolerance=1e-6)
    assert reason is not None and reason.startswith("the fast engine's forward pass differs from the model's by")
