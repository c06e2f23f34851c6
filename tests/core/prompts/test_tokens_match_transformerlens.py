"""Our tokenization is TransformerLens's: ``to_tokens`` and ``to_str_tokens`` of a real bridge agree."""

from __future__ import annotations

import numpy as np
import pytest

from ioi_desktop.core.pairs import notebook_prompt_set
from ioi_desktop.core.prompts import to_tokens, tokenize_set

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gpt2_bridge(gpt2_tokenizer, tmp_path_factory):
    """A one-layer random GPT-2 with GPT-2's tokenizer, saved and booted from its folder (no network)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel
    from transformer_lens.model_bridge import TransformerBridge

    torch.set_num_threads(1)
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("gpt2-random")
    config = GPT2Config(n_layer=1, n_head=2, n_embd=8, n_positions=64, vocab_size=len(gpt2_tokenizer))
    GPT2LMHeadModel(config).save_pretrained(str(folder))
    gpt2_tokenizer.save_pretrained(str(folder))
    return TransformerBridge.boot_transformers(str(folder), device="cpu")


def test_tokens_equal_bridge_to_tokens(gpt2_bridge, gpt2_tokenizer):
    texts = [p.clean for p in notebook_prompt_set()] + ["After John and Mary went to the store, John gave a bottle of milk to"]
    for text in texts:
        assert to_tokens(gpt2_tokenizer, text) == gpt2_bridge.to_tokens(text)[0].tolist()
    batch = tokenize_set(notebook_prompt_set(), gpt2_tokenizer)
    expected = gpt2_bridge.to_tokens([p.clean for p in notebook_prompt_set()]).numpy()
    np.testing.assert_array_equal(batch.clean_tokens, expected)
    assert batch.str_tokens[0] == gpt2_bridge.to_str_tokens(texts[0])
