"""Path patching under grouped- and multi-query attention, against hand-written TransformerLens hooked runs.

TransformerLens's ``get_act_patch_direct_path`` refuses k and v receivers when
``n_key_value_heads < n_heads``, so the reference here is written from its
hooks: the definition (Wang et al. 2022, as ``get_act_patch_direct_path`` does
it) on the corrupted run, with the senders' clean-minus-corrupted write
``(z_clean - z_corrupt)[:, :, h] @ W_O[h]`` added only to the receiver's own
pre-``ln1`` copy of the residual stream (TransformerLens's split q/k/v input,
``hook_{q,k,v}_input``, which has one copy per key-value head for k and v);
every other reader sees the corrupted run. Checked on tiny random
Llama/Mistral/Qwen2/Qwen3-shaped models (4 query heads, 2 key-value heads),
multi-query ones (a Llama with one key-value head, Falcon, GPTBigCode), on the
fast and the bridge engine, and with ``n_key_value_heads == n_heads`` against
``get_act_patch_direct_path`` itself.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from ioi_desktop.core.analyses import path_patching
from ioi_desktop.core.errors import AnalysisError

from tests.support.patching_helpers import (
    RecordingProgress,
    boot_processed_bridge,
    context,
    logit_diff_metric,
    notebook_pairs,
    tokenized_pairs,
)

TOL = 1e-5
SENDERS = [(0, 0), (0, 1), (0, 2), (0, 3)]
# (name, builder): rotary families from tests/support/rotary_models.py (3 layers), architectures from arch_models.
MODELS = {
    "llama_gqa": ("llama", 2),
    "mistral_gqa": ("mistral", 2),
    "qwen2_gqa": ("qwen2", 2),
    "qwen3_gqa": ("qwen3", 2),
    "llama_mqa": ("llama", 1),
    "llama_mha": ("llama", 4),
    "falcon_mqa": ("FalconForCausalLM", None),
    "gptbigcode_mqa": ("GPTBigCodeForCausalLM", None),
}
# Seed 0's tiny GPTBigCode attends almost uniformly, so its key paths change the metric by ~1e-5 only.
SEEDS = {"gptbigcode_mqa": 2}


def _build(name: str, folder):
    source, n_kv = MODELS[name]
    if n_kv is None:
        from tests.support.arch_models import save_tiny

        return boot_processed_bridge(save_tiny(source, folder, seed=SEEDS.get(name, 0)),
                                     refactor_factored_attn_matrices=False)
    from tests.support.rotary_models import random_bridge

    return random_bridge(source, folder, n_layers=3, n_kv_heads=n_kv)


@pytest.fixture(scope="module", params=list(MODELS))
def setup(request, tmp_path_factory):
    torch.set_num_threads(1)
    model = _build(request.param, tmp_path_factory.mktemp(request.param))
    batch = tokenized_pairs(notebook_pairs())
    with torch.no_grad():
        _l, clean = model.run_with_cache(torch.as_tensor(batch.clean_tokens))
        _l, corrupt = model.run_with_cache(torch.as_tensor(batch.corrupt_tokens))
    n_heads = int(model.cfg.n_heads)
    n_kv = int(getattr(model.cfg, "n_key_value_heads", None) or n_heads)
    return SimpleNamespace(name=request.param, model=model, batch=batch, clean=clean, corrupt=corrupt,
                           n_heads=n_heads, n_kv=n_kv, n_layers=int(model.cfg.n_layers))


def hooked_path(s, senders, layer, index, component) -> float:
    """Patched mean logit difference: the senders' summed write reaches only input ``index`` of
    ``blocks.{layer}``'s ``component`` (a query head for q; a key-value head for k and v)."""
    delta = 0
    for l, h in senders:
        if l < layer:
            name = f"blocks.{l}.attn.hook_z"
            delta = delta + (s.clean[name][:, :, h] - s.corrupt[name][:, :, h]) @ s.model.blocks[l].attn.W_O[h]
    fired = []

    def hook(fork, hook):  # [batch, pos, head or kv_head, d_model]
        fired.append(fork.shape[2])
        fork = fork.clone()
        fork[:, :, index] += delta
        return fork

    s.model.set_use_split_qkv_input(True)
    try:
        with torch.no_grad():
            logits = s.model.run_with_hooks(torch.as_tensor(s.batch.corrupt_tokens),
                                            fwd_hooks=[(f"blocks.{layer}.attn.hook_{component}_input", hook)])
    finally:
        s.model.set_use_split_qkv_input(False)
    expected = s.n_heads if component == "q" else s.n_kv
    assert fired == [expected], fired  # TransformerLens's fork has one copy per key-value head for k and v
    return float(logit_diff_metric(s.batch)(logits))


def _run(s, **options):
    return path_patching.run(context(s.model, s.batch), path_patching.Options(**options), RecordingProgress())


def _grid(result, component):
    arrays = result.arrays
    return arrays.get(f"path_patch_{component}_kv_raw", arrays.get(f"path_patch_{component}_raw"))


@pytest.mark.parametrize("engine", ["auto", "bridge"])
def test_forward_question_per_key_value_head(setup, engine):
    s = setup
    result = _run(s, senders="0.0,0.1,0.2,0.3", receivers=("q", "k", "v"), engine=engine)
    grouped = s.n_kv != s.n_heads
    if engine == "bridge":
        assert result.meta["engine"] == "bridge"
    for component in "qkv":
        per_kv = grouped and component != "q"
        assert (f"path_patch_{component}_kv" in result.arrays) is per_kv
        assert (f"path_patch_{component}" in result.arrays) is not per_kv
        raw = _grid(result, component)
        assert raw.shape == (s.n_layers, s.n_kv if per_kv else s.n_heads)
        for layer in range(1, s.n_layers):
            for index in range(raw.shape[1]):
                value = hooked_path(s, SENDERS, layer, index, component)
                assert abs(float(raw[layer, index]) - value) <= TOL, (component, layer, index)
        # The paths matter (the comparison can fail) and layer 0 (no sender before it) is unchanged.
        assert np.abs(raw[1:] - result.meta["corrupt_logit_diff"]).max() > 5 * TOL
        assert np.allclose(raw[0], result.meta["corrupt_logit_diff"])
        if per_kv:
            span = result.meta["clean_logit_diff"] - result.meta["corrupt_logit_diff"]
            assert np.allclose(result.arrays[f"path_patch_{component}_kv"],
                               (raw - result.meta["corrupt_logit_diff"]) / span, atol=1e-5)
    if grouped:
        group = s.n_heads // s.n_kv
        assert result.labels["kv_head"] == [
            f"KV{i} (H{i * group}-H{(i + 1) * group - 1})" for i in range(s.n_kv)]
        assert result.meta["n_key_value_heads"] == s.n_kv
    else:
        assert "kv_head" not in result.labels


def test_reverse_question_patches_the_receivers_key_value_head(setup):
    s = setup
    receiver = (s.n_layers - 1, s.n_heads - 1)
    kv = receiver[1] // (s.n_heads // s.n_kv)
    result = _run(s, receiver_head=f"{receiver[0]}.{receiver[1]}", receivers=("q", "k", "v"))
    if s.n_kv != s.n_heads:
        assert result.meta["receiver_kv_head"] == [receiver[0], kv]
    else:
        assert result.meta.get("receiver_kv_head") is None
    for component in "qkv":
        raw = result.arrays[f"path_patch_{component}_raw"]  # over senders: [layer, head]
        assert raw.shape == (s.n_layers, s.n_heads)
        index = receiver[1] if component == "q" else kv
        for layer in range(receiver[0]):
            for head in range(s.n_heads):
                value = hooked_path(s, [(layer, head)], receiver[0], index, component)
                assert abs(float(raw[layer, head]) - value) <= TOL, (component, layer, head)
        assert np.allclose(raw[receiver[0]:], result.meta["corrupt_logit_diff"])


def test_q_receivers_and_mha_match_get_act_patch_direct_path(setup):
    """TransformerLens's own function where it is defined: q under GQA, and every component without it."""
    from transformer_lens.patching import get_act_patch_direct_path

    s = setup
    components = "qkv" if s.n_kv == s.n_heads else "q"
    result = _run(s, senders="0.1", receivers=tuple(components))
    for component in components:
        with torch.no_grad():
            reference = get_act_patch_direct_path(
                s.model, torch.as_tensor(s.batch.corrupt_tokens), s.clean, s.corrupt, logit_diff_metric(s.batch),
                0, 1, component, verbose=False).numpy()
        raw = result.arrays[f"path_patch_{component}_raw"]
        assert np.abs(raw[1:] - reference[1:]).max() <= TOL, component


def test_blocks_that_normalize_the_attention_output_are_refused(tmp_path):
    """Gemma 2's post-attention norm: a head's write is not z @ W_O, so path patching refuses (as TL does)."""
    from tests.support.rotary_models import random_bridge

    torch.set_num_threads(1)
    model = random_bridge("gemma2", tmp_path, n_layers=2)
    batch = tokenized_pairs(notebook_pairs()[:2])
    for options in ({"senders": "0.1", "receivers": ("q",)}, {"senders": "0.1", "receivers": ("logits",)}):
        with pytest.raises(AnalysisError) as info:
            path_patching.run(context(model, batch), path_patching.Options(**options), RecordingProgress())
        assert "cannot isolate one head's write" in info.value.message and "\n" not in str(info.value)
