"""Shared helpers of the circuit tests: a small strong random GPT-2 and ABC-corrupted prompt pairs.

The model has random LayerNorm weights (so fold_ln matters) and weights ten
times HF's initial scale, so the logit difference and the edge effects are far
from 0; the corrupted prompts replace every name (ABC), so clean and corrupted
means do not cancel as the notebook's swapped pairs do on a random model.
"""

from __future__ import annotations

ABC_PAIRS = [
    ("When John and Mary went to the shops, John gave the bag to",
     "When Tom and James went to the shops, Dan gave the bag to", " Mary", " John"),
    ("When Tom and James went to the park, James gave the ball to",
     "When Sid and Amy went to the park, Martin gave the ball to", " Tom", " James"),
    ("When Dan and Sid went to the shops, Sid gave an apple to",
     "When John and Martin went to the shops, Mary gave an apple to", " Dan", " Sid"),
    ("After Martin and Amy went to the park, Martin gave a drink to",
     "After Tom and Mary went to the park, James gave a drink to", " Amy", " Martin"),
    ("When Mary and John went to the shops, John gave the bag to",
     "When Sid and Dan went to the shops, Amy gave the bag to", " Mary", " John"),
    ("When James and Tom went to the park, James gave the ball to",
     "When Martin and John went to the park, Mary gave the ball to", " Tom", " James"),
]


def save_strong_random_gpt2(folder, tokenizer, *, n_layer=3, n_head=2, n_embd=32, seed=1):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=64, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
                        initializer_range=0.2, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if ".ln_" in name or name.startswith("transformer.ln_f"):
                parameter.copy_(1.0 + 0.3 * torch.randn_like(parameter) if name.endswith("weight")
                                else 0.2 * torch.randn_like(parameter))
            elif name.endswith(".bias"):
                parameter.copy_(0.1 * torch.randn_like(parameter))
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
