"""Attention patterns: where every head looks, on every clean prompt.

``pattern[prompt, layer, head, query_pos, key_pos]`` is the softmax of the
attention scores (``blocks.L.attn.hook_pattern``): row ``query_pos`` says how
much the token there reads from each earlier ``key_pos``. Positions past a
prompt's length (right padding) are set to 0 so a viewer never shows attention
from or to padding. Token labels for each prompt are in the metadata
(``str_tokens``); the ``query_pos``/``key_pos`` labels are the set's position
labels.
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
    query_pos_labels: Positions | None = labels("query_pos", "the set's positions")
    key_pos_labels: Positions | None = labels("key_pos", "the set's positions")
    str_tokens: list | None = meta("each clean prompt's tokens as text")
    lengths: list | None = meta("each prompt's length in tokens")


def hooks_needed(ctx: AnalysisContext, options: Options) -> set[str]:
    return set(hooks.hook_names("pattern", ctx.handle.info.n_layers))


def count_units(ctx: AnalysisContext, options: Options) -> int:
    return ctx.handle.info.n_layers


def run(ctx: AnalysisContext, options: Options, progress: Progress) -> Result:
    import torch

    from ioi_desktop.core.analyses.metrics import as_float32, prompt_labels

    batch = ctx.batch
    n_layers = int(ctx.handle.info.n_layers)
    progress.set_total(n_layers)
    cache = ctx.runs.cache("clean")
    lengths = np.asarray(batch.lengths)
    n_pos = np.asarray(batch.clean_tokens).shape[1]
    valid = np.arange(n_pos)[None, :] < lengths[:, None]
    mask = (valid[:, :, None] & valid[:, None, :])[:, None, :, :]
    layers = []
    with torch.no_grad():
        for layer in range(n_layers):
            progress.check_cancelled()
            pattern = as_float32(cache[hooks.hook_name("pattern", layer)])
            layers.append(np.where(mask, pattern, np.float32(0.0)))
            progress.advance(1, f"attention patterns of layer {layer}")
    positions = Positions.of_set(batch)
    return Result(
        attention_pattern=np.ascontiguousarray(np.stack(layers, axis=1), dtype=np.float32),
        prompt_labels=prompt_labels(batch),
        query_pos_labels=positions,
        key_pos_labels=positions,
        str_tokens=[list(tokens) for tokens in batch.str_tokens],
        lengths=[int(n) for n in lengths],
    )
