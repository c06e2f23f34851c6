"""The bridge engine on a rotary Llama (the fast engine covers Llama too: see test_fast_engine_families)."""

from __future__ import annotations

import pytest
import torch

from ioi_desktop.core.analyses import patching

from tests.support.patching_helpers import (
    RecordingProgress,
    boot_processed_bridge,
    context,
    gpt2_tokenizer,
    tl_reference_cells,
)


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.set_num_threads(1)
    torch.manual_seed(0)
    config = LlamaConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=4, vocab_size=50257, max_position_embeddings=64,
        bos_token_id=50256, eos_token_id=50256,
    )
    folder = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).eval().save_pretrained(folder)
    gpt2_tokenizer().save_pretrained(folder)
    # Rotary models cannot refactor the QK circuit; the other notebook flags apply.
    return boot_processed_bridge(folder, refactor_factored_attn_matrices=False)


@pytest.mark.slow
def test_rotary_model_matches_transformer_lens(llama, tiny):
    batch = tiny.batch
    options = patching.Options(sweeps=("head_z", "resid_pre", "head_q"), engine="bridge")
    result = patching.run(context(llama, batch), options, RecordingProgress())
    assert result.meta["engine"] == "bridge"
    with torch.no_grad():
        _logits, clean_cache = llama.run_with_cache(torch.as_tensor(batch.clean_tokens))
    positions = list(range(tiny.first_changed - 1, batch.clean_tokens.shape[1]))
    for sweep in ("head_z", "resid_pre", "head_q"):
        reference = tl_reference_cells(llama, batch, sweep, clean_cache, positions)
        raw = result.arrays[patching.SWEEPS[sweep].array + "_raw"]
        worst = max(abs(float(raw[cell]) - value) for cell, value in reference.items())
        assert worst <= 1e-5, (sweep, worst)
    assert not result.arrays["patch_resid_pre"][:, : tiny.first_changed].any()
