"""Shared helpers of the analysis tests: model folders, prompt sets, reference caches.

The reference for every check is TransformerLens itself, run on each prompt
alone (no padding), so the analyses' handling of padding and per-prompt END
positions is checked too.
"""

from __future__ import annotations

from pathlib import Path

RAGGED_PAIRS = (
    ("When John and Mary went to the shops, John gave the bag to",
     "When John and Mary went to the shops, Mary gave the bag to", " Mary", " John"),
    ("After Tom and James went to the park, James gave a ball to",
     "After Tom and James went to the park, Tom gave a ball to", " Tom", " James"),
    ("Then, Dan and Sid had a long and really fun day at the school. Sid gave a drink to",
     "Then, Dan and Sid had a long and really fun day at the school. Dan gave a drink to", " Dan", " Sid"),
)


def save_random_gpt2(folder: Path, tokenizer, *, n_layer=3, n_head=4, n_embd=32, seed=0) -> Path:
    """A random GPT-2 whose LayerNorm weights and biases are random too, so weight processing matters."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=64, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
                        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if ".ln_" in name or name.startswith("transformer.ln_f"):
                if name.endswith("weight"):
                    parameter.copy_(1.0 + 0.3 * torch.randn_like(parameter))
                else:
                    parameter.copy_(0.2 * torch.randn_like(parameter))
            elif name.endswith(".bias"):
                parameter.copy_(0.1 * torch.randn_like(parameter))
        # Larger weights than HF's init give logit differences far from 0.
        for block in model.transformer.h:
            block.attn.c_attn.weight.mul_(8.0)
        model.transformer.wte.weight.mul_(5.0)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def notebook_batch(handle):
    from ioi_desktop.core.pairs import notebook_prompt_set
    from ioi_desktop.core.prompts import tokenize_set

    return tokenize_set(notebook_prompt_set(), handle.tokenizer, n_ctx=handle.info.n_ctx)


def ragged_batch(handle):
    from ioi_desktop.core.prompts import PromptPair, PromptSet, tokenize_set

    pairs = PromptSet(tuple(PromptPair(*pair) for pair in RAGGED_PAIRS))
    return tokenize_set(pairs, handle.tokenizer, n_ctx=handle.info.n_ctx)


def reference_caches(handle, batch, which="clean"):
    """[(logits [1, pos, vocab], full ActivationCache)] of each prompt run alone, unpadded."""
    import numpy as np
    import torch

    tokens = batch.clean_tokens if which == "clean" else batch.corrupt_tokens
    found = []
    with torch.no_grad():
        for row, length in zip(np.asarray(tokens), np.asarray(batch.lengths)):
            found.append(handle.model.run_with_cache(torch.as_tensor(row[:length])[None]))
    return found
