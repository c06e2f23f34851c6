"""Attention patterns: where every head looks, on every clean prompt.

``pattern[prompt, layer, head, query_pos, key_pos]`` is the softmax of the
attention scores (``blocks.L.attn.hook_pattern``): row ``query_pos`` says how
much the token there reads from each earlier ``key_pos``. Positions past a
prompt's length (right padding) are set to 0 so a viewer never shows attention
from or to padding. Token labels for each prompt are in the metadata
(``str_tokens``); the ``query_pos``/``key_pos`` labels are the set's position
labels.

Hybrid models (Jamba, Bamba, LFM2, Qwen3-Next, ...: attention in some layers,
a recurrent, convolution or linear-attention mixer in the others) have
patterns only in their attention layers: the ``layer`` axis then holds those
layers only, in order, ``layer_labels`` name each row's real layer index and
``attention_layers`` lists them (None when every layer has attention).
"""

from __future__ import annotations


import numpy as np
from jaxtyping import Float32

from ioi_desktop.core import hooks
from ioi_desktop.core.analyses.base import AnalysisContext, AnalysisOptions, AnalysisResult, Positions, Progress, array, labels, meta

NAME = "attention"


class Options(AnalysisOptions, analysis=NAME):
    """No options."""


class Result(AnalysisResult, analysis=NAME, title="Attention patterns"):
    attention_pattern: Float32[np.ndarray, "prompt layer head query_pos key_pos"] | None = array(
        "softmax attention of every head on every clean prompt; 0 from and to padding")
    prompt_labels: tuple[str, ...] | None = labels("prompt", "each prompt's text without BOS")
    layer_labels: tuple[str, ...] | None = labels(
        "layer", "hybrids: the real layer index of each row (their attention layers only); None: every layer")
    query_pos_labels: Positions | None = labels("query_pos", "the set's positions")
    key_pos_labels: Positions | None = labels("key_pos", "the set's positions")
    str_tokens: list | None = meta("each clean prompt's tokens as text")
    lengths: list | None = meta("each prompt's length in tokens")
    attention_layers: list | None = meta("hybrids: the layers with attention, one per row; None: every layer")


def hooks_needed(ctx: AnalysisContext, options: Options) -> set[str]:
    return {hooks.hook_name("pattern", layer) for layer in hooks.attention_layers(ctx.handle.model)}


def count_units(ctx: AnalysisContext, options: Options) -> int:
    return len(hooks.attention_layers(ctx.handle.model))


def run(ctx: AnalysisContext, options: Options, progress: Progress) -> Result:
    import torch

    from ioi_desktop.core.analyses.metrics import as_float32, prompt_labels

    batch = ctx.batch
    n_layers = int(ctx.handle.model.cfg.n_layers)
    with_heads = hooks.attention_layers(ctx.handle.model)
    progress.set_total(len(with_heads))
    cache = ctx.runs.cache("clean")
    lengths = np.asarray(batch.lengths)
    n_pos = np.asarray(batch.clean_tokens).shape[1]
    valid = np.arange(n_pos)[None, :] < lengths[:, None]
    mask = (valid[:, :, None] & valid[:, None, :])[:, None, :, :]
    layers = []
    with torch.no_grad():
        for layer in with_heads:
            progress.check_cancelled()
            pattern = as_float32(cache[hooks.hook_name("pattern", layer)])
            layers.append(np.where(mask, pattern, np.float32(0.0)))
            progress.advance(1, f"attention patterns of layer {layer}")
    positions = Positions.of_set(batch)
    return Result(
        attention_pattern=np.ascontiguousarray(np.stack(layers, axis=1), dtype=np.float32),
        prompt_labels=prompt_labels(batch),
        layer_labels=None if len(with_heads) == n_layers else tuple(str(layer) for layer in with_heads),
        attention_layers=None if len(with_heads) == n_layers else list(with_heads),
        query_pos_labels=positions,
        key_pos_labels=positions,
        str_tokens=[list(tokens) for tokens in batch.str_tokens],
        lengths=[int(n) for n in lengths],
    )
