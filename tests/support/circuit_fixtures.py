"""Shared helpers of the circuit tests: a small strong random GPT-2 and ABC-corrupted prompt pairs.

The model has random LayerNorm weights (so fold_ln matters) and weights ten
times HF's initial scale, so the logit difference and the edge effects are far
from 0; the corrupted prompts replace every name (ABC), so clean and corrupted
means do not cancel as the notebook's swapped pairs do on a random model.
"""

from __future__ import annotations

import re
from contextlib import contextmanager

import torch

from tests.support.patching_helpers import logit_diff_metric

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


# ---- references written with plain TransformerLens hooks (named by hook, no graph index arithmetic)


@contextmanager
def tl_flags(model):
    model.set_use_split_qkv_input(True)
    model.set_use_attn_result(True)
    model.set_use_hook_mlp_in(True)
    try:
        yield
    finally:
        model.set_use_split_qkv_input(False)
        model.set_use_attn_result(False)
        model.set_use_hook_mlp_in(False)


def sender_output(cache, name):
    if name == "input":
        return cache["hook_embed"] + cache["hook_pos_embed"]
    head = re.fullmatch(r"a(\d+)\.h(\d+)", name)
    if head:
        return cache[f"blocks.{head[1]}.attn.hook_result"][:, :, int(head[2])]
    return cache[f"blocks.{name[1:]}.hook_mlp_out"]


def receiver_hook(name, n_layers):
    """(hook name, head index or None) of a receiver."""
    head = re.fullmatch(r"a(\d+)\.h(\d+)<([qkv])>", name)
    if head:
        return f"blocks.{head[1]}.attn.hook_{head[3]}_input", int(head[2])
    if name == "logits":
        return f"blocks.{n_layers - 1}.hook_resid_post", None
    return f"blocks.{name[1:]}.hook_mlp_in", None


def add_at(receiver, n_layers, vector):
    hook_name, head = receiver_hook(receiver, n_layers)

    def hook(act, hook):
        act = act.clone()
        if head is None:
            act += vector
        else:
            act[:, :, head] += vector
        return act

    return hook_name, hook


def run_metric(model, batch, hooks):
    with tl_flags(model), torch.no_grad():
        logits = model.run_with_hooks(torch.as_tensor(batch.clean_tokens), fwd_hooks=hooks)
    return float(logit_diff_metric(batch)(logits))


def split(edge):
    sender, receiver = edge.split("->")
    return sender, receiver


def directional_derivative(model, batch, caches, edge, eps, alpha=None):
    """(m(+eps) - m(-eps)) / 2eps with receiver input += eps * (corrupt - clean sender), embeddings at ``alpha``."""
    clean, corrupt = caches
    sender, receiver = split(edge)
    delta = sender_output(corrupt, sender) - sender_output(clean, sender)
    hooks = []
    if alpha is not None:
        mixed = corrupt["hook_embed"] + alpha * (clean["hook_embed"] - corrupt["hook_embed"])
        hooks.append(("hook_embed", lambda act, hook: mixed))
    up = run_metric(model, batch, hooks + [add_at(receiver, model.cfg.n_layers, eps * delta)])
    down = run_metric(model, batch, hooks + [add_at(receiver, model.cfg.n_layers, -eps * delta)])
    return (up - down) / (2 * eps)
