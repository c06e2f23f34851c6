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
import torch

from ioi_desktop.core import hooks
from ioi_desktop.core.analyses.base import AnalysisContext, AnalysisResult, Progress
from ioi_desktop.core.analyses.logit_diff import as_float32, prompt_labels
from ioi_desktop.core.positions import position_labels

NAME = "attention"


def hooks_needed(ctx: AnalysisContext) -> set[str]:
    return set(hooks.hook_names("pattern", ctx.handle.info.n_layers))


def count_units(ctx: AnalysisContext) -> int:
    return ctx.handle.info.n_layers


def run(ctx: AnalysisContext, progress: Progress) -> AnalysisResult:
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
    labels = position_labels(batch)
    return AnalysisResult(
        name=NAME,
        arrays={"attention_pattern": np.ascontiguousarray(np.stack(layers, axis=1), dtype=np.float32)},
        axes={"attention_pattern": ("prompt", "layer", "head", "query_pos", "key_pos")},
        labels={"prompt": prompt_labels(batch), "query_pos": labels, "key_pos": labels},
        meta={
            "str_tokens": [list(tokens) for tokens in batch.str_tokens],
            "lengths": [int(n) for n in lengths],
        },
    )
