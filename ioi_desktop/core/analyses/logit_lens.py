"""Logit lens: what the residual stream predicts part-way through the model.

The residual stream after each half-layer (``resid_pre`` of every layer, its
``resid_mid``, and the final ``resid_post``) is read through the final
LayerNorm and the unembedding as if it were the last layer's output
(nostalgebraist's "logit lens").

(a) The logit-difference lens: each point at each prompt's own END position,
through the final LayerNorm, projected on ``W_U[:, correct] - W_U[:,
incorrect]`` (no unembedding bias, as in the demo), averaged over prompts.
Labels ``0_pre, 0_mid, 1_pre, ..., final_post``; the last point is the
model's real logit difference minus ``b_U[correct] - b_U[incorrect]``.
Models with parallel attention and MLP (GPT-NeoX/Pythia, GPT-J, Phi, Falcon,
Cohere) have no residual stream between the two, so their lens has no
``_mid`` points (``0_pre, 1_pre, ..., final_post``, TransformerLens's
``accumulated_resid(incl_mid=False)``); ``meta["incl_mid"]`` says which. Option
``lens_norm`` says how the final LayerNorm is applied (recorded in
``meta["lens_norm"]``):

- ``"cached_final"`` (default, the Exploratory Analysis Demo's method):
  ``cache.accumulated_resid(layer=-1, incl_mid=True, pos_slice=-1)`` then
  ``cache.apply_ln_to_stack(..., layer=-1, pos_slice=-1)``: every point is
  centred and divided by the final LayerNorm's *cached* scale of the real run,
  so the lens is linear in the residual stream and its steps are the
  per-layer direct logit attributions;
- ``"recompute"``: LayerNorm statistics recomputed on each point, as
  ``transformer_lens.tools.analysis.logit_lens`` does.

Ours rather than TransformerLens's tools, with parity tests against both:
``tools.analysis.logit_lens`` always recomputes LayerNorm (it has no cached
scale) and unembeds the full vocabulary to read two logits, where a dot
product with the answer direction suffices; prompts of unequal length are
read at each prompt's own END, which one ``pos_slice`` cannot express.
Measured (``benchmarks/bench_tl_tools.py``, GPT-2-small-shaped random model,
the notebook's 8 pairs, 1 thread): lens points 0.001 s vs 0.20 s, grid 1.1 s
vs 6.1 s, same numbers to 6e-6.

(b) The grid (always LayerNorm recomputed at each row, the standard logit
lens, as ``tools.analysis.logit_lens``): for ``resid_pre`` of every layer and
the final ``resid_post``, at every position of every prompt, the top-k
tokens and their probabilities after the final LayerNorm and the full
unembedding (``W_U`` and ``b_U``), plus the logit difference and p(correct)
of that prompt's answers in every cell, so a view can switch prompt or
colouring without recomputing. One unembedding per block gives all four,
where ``logit_readout`` takes one selector (top-k or targets) per call.
Padding positions (past a prompt's length) hold id -1 and zeros.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from jaxtyping import Float32, Int32

from ioi_desktop.core import hooks
from ioi_desktop.core.analyses.base import AnalysisContext, AnalysisOptions, AnalysisResult, Positions, Progress, array, labels, meta, option
from ioi_desktop.core.analyses.logit_diff import MAX_TOP_K, check_top_k

NAME = "logit_lens"
LENS_NORMS = {
    "cached_final": "final LayerNorm scale cached from the real run at every point (the notebook's "
    "accumulated_resid + apply_ln_to_stack; linear, steps equal per-layer DLA)",
    "recompute": "final LayerNorm recomputed at each point (tools.analysis.logit_lens)",
}
DEFAULT_LENS_NORM = "cached_final"


class Options(AnalysisOptions, analysis=NAME):
    top_k: int = option(5, "How many most likely tokens each grid cell keeps", low=1, high=MAX_TOP_K)
    lens_norm: str = option(DEFAULT_LENS_NORM, "How the logit-difference lens applies the final LayerNorm: "
                            "cached_final, the notebook's cached scale of the real run at every point, or "
                            "recompute, recomputed at each point (the top-token grid always recomputes it)",
                            choices=tuple(LENS_NORMS))


class Result(AnalysisResult, analysis=NAME, title="Logit lens"):
    logit_lens_logit_diff: Float32[np.ndarray, "resid"] | None = array(
        "logit difference read at each lens point at END, mean over prompts (no b_U)")
    logit_lens_logit_diff_by_prompt: Float32[np.ndarray, "prompt resid"] | None = array("the same per prompt")
    logit_lens_grid_top_ids: Int32[np.ndarray, "lens_layer prompt pos rank"] | None = array(
        "top-k token ids of each residual stream at each position (-1 past a prompt's end)")
    logit_lens_grid_top_probs: Float32[np.ndarray, "lens_layer prompt pos rank"] | None = array("their probabilities")
    logit_lens_grid_logit_diff: Float32[np.ndarray, "lens_layer prompt pos"] | None = array(
        "logit difference of the prompt's answers in each cell")
    logit_lens_grid_p_correct: Float32[np.ndarray, "lens_layer prompt pos"] | None = array("p(correct) in each cell")
    resid_labels: tuple[str, ...] | None = labels("resid", "lens points: 0_pre, 0_mid, ..., final_post")
    lens_layer_labels: tuple[str, ...] | None = labels("lens_layer", "grid rows: 0_pre, ..., final_post")
    prompt_labels: tuple[str, ...] | None = labels("prompt", "each prompt's text without BOS")
    pos_labels: Positions | None = labels("pos", "the set's positions")
    rank_labels: tuple[str, ...] | None = labels("rank", "'top 1', 'top 2', ...")
    top_k: int | None = meta("how many top tokens were kept")
    token_text: dict | None = meta("decoded text of every top-k token id, keyed by the id as a string")
    lens_norm: str | None = meta("the lens_norm option the lens used: cached_final or recompute")
    lens_ln: str | None = meta("how the lens applied the final LayerNorm, in words")
    grid_ln: str | None = meta("how the grid applied the final LayerNorm, in words")
    lens_bias: str | None = meta("where the unembedding bias is included")
    lengths: list | None = meta("each prompt's length in tokens")
    incl_mid: bool | None = meta("whether the lens has resid_mid points (False for parallel attention/MLP blocks)")
# Bound the [prompts, pos, d_vocab] logits block unembedded at once.
_MAX_LOGIT_ELEMENTS = 32_000_000


def has_resid_mid(model: Any) -> bool:
    """Whether the model has a residual stream between attention and MLP (not parallel blocks)."""
    hook_dict = getattr(model, "hook_dict", None)
    return hook_dict is None or hooks.hook_name("resid_mid", 0) in hook_dict


def lens_point_names(n_layers: int, incl_mid: bool = True) -> list[tuple[str, str]]:
    """(label, hook name) of every lens point: 0_pre, 0_mid (when ``incl_mid``), ..., final_post."""
    points = []
    for layer in range(n_layers):
        points.append((f"{layer}_pre", hooks.hook_name("resid_pre", layer)))
        if incl_mid:
            points.append((f"{layer}_mid", hooks.hook_name("resid_mid", layer)))
    points.append(("final_post", hooks.resid_final_name(n_layers)))
    return points


def grid_point_names(n_layers: int) -> list[tuple[str, str]]:
    """(label, hook name) of the grid rows: resid_pre of every layer, then final_post."""
    rows = [(f"{layer}_pre", hooks.hook_name("resid_pre", layer)) for layer in range(n_layers)]
    rows.append(("final_post", hooks.resid_final_name(n_layers)))
    return rows


def hooks_needed(ctx: AnalysisContext, options: Options) -> set[str]:
    points = lens_point_names(ctx.handle.info.n_layers, has_resid_mid(ctx.handle.model))
    return {name for _, name in points} | {hooks.LN_FINAL_SCALE}


def count_units(ctx: AnalysisContext, options: Options) -> int:
    return ctx.handle.info.n_layers + 2


def apply_final_ln(model: Any, resid: "torch.Tensor") -> "torch.Tensor":
    """The model's final LayerNorm with statistics recomputed on ``resid`` itself."""
    if getattr(model, "ln_final", None) is None:
        return resid
    shape = resid.shape
    flat = resid.reshape(-1, 1, shape[-1])
    return model.ln_final(flat).reshape(shape)


def logit_diff_lens(model: Any, cache: Any, batch: Any, n_layers: int,
                    lens_norm: str = DEFAULT_LENS_NORM) -> tuple["torch.Tensor", list[str]]:
    """[prompt, point] logit difference read at each lens point at each prompt's END."""
    import torch

    from ioi_desktop.core.analyses.dla import final_ln_at_end
    from ioi_desktop.core.analyses.metrics import at_end, end_index, logit_diff_directions

    points = lens_point_names(n_layers, has_resid_mid(model))
    directions = logit_diff_directions(model, batch)
    end = end_index(batch, directions.device)
    if lens_norm == "cached_final":
        stacked = torch.stack([at_end(cache[name], end) for _, name in points], dim=0)  # [point, prompt, d_model]
        normalized = final_ln_at_end(model, cache, stacked, end).float()
        return torch.einsum("tpd,pd->pt", normalized, directions), [label for label, _ in points]
    stacked = torch.stack([at_end(cache[name], end) for _, name in points], dim=1)
    normalized = apply_final_ln(model, stacked).float()
    return torch.einsum("ptd,pd->pt", normalized, directions), [label for label, _ in points]


def _grid_row(model: Any, resid: "torch.Tensor", batch: Any, k: int) -> dict[str, "torch.Tensor"]:
    """Top-k, logit difference and p(correct) of every (prompt, pos) of one residual stream."""
    import torch

    from ioi_desktop.core.analyses.metrics import answer_ids

    n_prompts, n_pos, _ = resid.shape
    W_U, b_U = model.W_U, getattr(model, "b_U", None)
    correct, incorrect = answer_ids(batch, resid.device)
    chunk = max(1, _MAX_LOGIT_ELEMENTS // max(1, n_pos * W_U.shape[1]))
    parts: dict[str, list[torch.Tensor]] = {"ids": [], "probs": [], "diff": [], "p_correct": []}
    for start in range(0, n_prompts, chunk):
        stop = min(n_prompts, start + chunk)
        logits = apply_final_ln(model, resid[start:stop]) @ W_U
        if b_U is not None:
            logits = logits + b_U
        log_probs = torch.log_softmax(logits.float(), dim=-1)
        top_log_probs, top_ids = log_probs.topk(k, dim=-1)
        c = correct[start:stop, None, None].expand(-1, n_pos, 1)
        i = incorrect[start:stop, None, None].expand(-1, n_pos, 1)
        parts["ids"].append(top_ids)
        parts["probs"].append(top_log_probs.exp())
        parts["diff"].append((logits.gather(-1, c) - logits.gather(-1, i))[..., 0].float())
        parts["p_correct"].append(log_probs.gather(-1, c)[..., 0].exp())
    row = {key: torch.cat(value, dim=0) for key, value in parts.items()}
    lengths = torch.as_tensor(np.asarray(batch.lengths), device=resid.device)
    padding = torch.arange(n_pos, device=resid.device)[None, :] >= lengths[:, None]
    row["ids"] = row["ids"].masked_fill(padding[..., None], -1)
    row["probs"] = row["probs"].masked_fill(padding[..., None], 0.0)
    row["diff"] = row["diff"].masked_fill(padding, 0.0)
    row["p_correct"] = row["p_correct"].masked_fill(padding, 0.0)
    return row


def run(ctx: AnalysisContext, options: Options, progress: Progress) -> Result:
    import torch

    from ioi_desktop.core.analyses.metrics import (
        as_float32,
        as_int32,
        prompt_labels,
        rank_labels,
        token_text,
    )

    model, batch = ctx.handle.model, ctx.batch
    n_layers = int(ctx.handle.info.n_layers)
    k = check_top_k(options.top_k, int(ctx.handle.info.d_vocab))
    progress.set_total(n_layers + 2)
    cache = ctx.runs.cache("clean")
    with torch.no_grad():
        by_prompt, lens_labels = logit_diff_lens(model, cache, batch, n_layers, options.lens_norm)
        progress.advance(1, "logit-difference lens")
        rows = grid_point_names(n_layers)
        grid: dict[str, list[np.ndarray]] = {"ids": [], "probs": [], "diff": [], "p_correct": []}
        for index, (label, name) in enumerate(rows):
            progress.check_cancelled()
            row = _grid_row(model, cache[name], batch, k)
            grid["ids"].append(as_int32(row["ids"]))
            for key in ("probs", "diff", "p_correct"):
                grid[key].append(as_float32(row[key]))
            for array, key in (("logit_lens_grid_logit_diff", "diff"), ("logit_lens_grid_top_ids", "ids"),
                               ("logit_lens_grid_top_probs", "probs")):
                progress.rows(array, index, grid[key][-1], (len(rows), *grid[key][-1].shape))
            progress.advance(1, f"logit lens grid at {label}")
    top_ids = np.ascontiguousarray(np.stack(grid["ids"]), dtype=np.int32)
    return Result(
        logit_lens_logit_diff=as_float32(by_prompt.mean(dim=0)),
        logit_lens_logit_diff_by_prompt=as_float32(by_prompt),
        logit_lens_grid_top_ids=top_ids,
        logit_lens_grid_top_probs=np.ascontiguousarray(np.stack(grid["probs"]), dtype=np.float32),
        logit_lens_grid_logit_diff=np.ascontiguousarray(np.stack(grid["diff"]), dtype=np.float32),
        logit_lens_grid_p_correct=np.ascontiguousarray(np.stack(grid["p_correct"]), dtype=np.float32),
        resid_labels=tuple(lens_labels),
        lens_layer_labels=tuple(label for label, _ in rows),
        prompt_labels=prompt_labels(batch),
        pos_labels=Positions.of_set(batch),
        rank_labels=rank_labels(k),
        top_k=k,
        token_text=token_text(ctx.handle.tokenizer, top_ids),
        lens_norm=options.lens_norm,
        lens_ln=LENS_NORMS[options.lens_norm],
        grid_ln=LENS_NORMS["recompute"] + ", the standard logit lens",
        lens_bias="logit_lens_logit_diff excludes b_U; the grid's logits include it",
        lengths=[int(n) for n in np.asarray(batch.lengths)],
        incl_mid=has_resid_mid(model),
    )
