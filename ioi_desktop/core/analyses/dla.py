"""Direct logit attribution: which components write the answer into the residual stream.

The final residual stream is a sum of what every component wrote: the token
and position embeddings, each layer's attention output and MLP output
(``ActivationCache.decompose_resid``), and each attention output is itself the
sum of its heads' outputs ``z_h @ W_O[h]`` plus a bias
(``stack_head_results``). The final LayerNorm (after ``fold_ln`` it only
centres and divides by a per-position scale) is linear once that scale is
fixed, so, as the TransformerLens demo does, each component is centred and
divided by the *cached* final scale of the real run (``apply_ln_to_stack``)
and projected on the logit-difference direction ``W_U[:, correct] -
W_U[:, incorrect]`` at each prompt's END position.

The component attributions then add up exactly to the real logit difference
minus ``b_U[correct] - b_U[incorrect]`` (kept as ``dla_unembed_bias``).
Averages over prompts are the headline numbers; the per-prompt values are kept.

Ours rather than ``transformer_lens.tools.analysis.direct_logit_attribution``
(which gives the same numbers: tested per prompt, components and heads):
prompt sets of unequal length are read at each prompt's own END position,
which the tool's one ``pos`` slice for every prompt cannot express (speed
is no reason: on a cached run both take milliseconds).

Hybrid models (attention in some layers, a recurrent, convolution or
linear-attention mixer in the others): a mixer layer's component is
``{layer}_mixer_out`` (``resid_mid - resid_pre``, what the mixer added) and an
MLP without ``hook_mlp_out`` is ``resid_post - resid_mid``, so the components
still add up to the logit difference; the per-head grids hold the attention
layers only, ``layer_labels`` naming each row's real layer index and
``attention_layers`` listing them (None when every layer has attention).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from jaxtyping import Float32

from ioi_desktop.core import hooks
from ioi_desktop.core.analyses.base import AnalysisContext, AnalysisOptions, AnalysisResult, Progress, array, labels, meta

NAME = "dla"


class Options(AnalysisOptions, analysis=NAME):
    """No options."""


class Result(AnalysisResult, analysis=NAME, title="Direct logit attribution"):
    dla_components: Float32[np.ndarray, "component"] | None = array(
        "each component's direct effect on the logit difference at END, mean over prompts")
    dla_components_by_prompt: Float32[np.ndarray, "prompt component"] | None = array("the same per prompt")
    dla_head: Float32[np.ndarray, "layer head"] | None = array("each head's direct effect, mean over prompts")
    dla_head_by_prompt: Float32[np.ndarray, "prompt layer head"] | None = array("the same per prompt")
    dla_unembed_bias: Float32[np.ndarray, "prompt"] | None = array(
        "b_U[correct] - b_U[incorrect]: the part of the logit difference no component writes")
    component_labels: tuple[str, ...] | None = labels(
        "component", "embed, pos_embed, 0_attn_out, 0_mlp_out, ... (hybrids: {layer}_mixer_out for a mixer layer)")
    layer_labels: tuple[str, ...] | None = labels(
        "layer", "hybrids: the real layer index of each row (their attention layers only); None: every layer")
    prompt_labels: tuple[str, ...] | None = labels("prompt", "each prompt's text without BOS")
    logit_diff_mean: float | None = meta("the real mean logit difference of the clean run")
    unembed_bias_mean: float | None = meta("mean of dla_unembed_bias")
    max_reconstruction_error: float | None = meta(
        "max over prompts of |sum of components + unembed bias - real logit difference|")
    ln: str | None = meta("how the final LayerNorm was applied")
    attention_layers: list | None = meta("hybrids: the layers with attention, one per row; None: every layer")


def _has_mlp(model: Any) -> bool:
    return not getattr(model.cfg, "attn_only", False)


def hooks_needed(ctx: AnalysisContext, options: Options) -> set[str]:
    model = ctx.handle.model
    n_layers = int(model.cfg.n_layers)
    with_heads = hooks.attention_layers(model)
    names = {hooks.EMBED, hooks.POS_EMBED, hooks.LN_FINAL_SCALE}
    names.update(hooks.hook_name(kind, layer) for kind in ("attn_out", "z") for layer in with_heads)
    if len(with_heads) < n_layers:  # a hybrid: mixer and MLP outputs as residual differences
        names.update(hooks.hook_name(kind, layer) for kind in ("resid_pre", "resid_mid", "resid_post")
                     for layer in range(n_layers))
    if _has_mlp(model):
        hook_dict = getattr(model, "hook_dict", None)
        names.update(name for name in hooks.hook_names("mlp_out", n_layers)
                     if hook_dict is None or len(with_heads) == n_layers or name in hook_dict)
    return names


def count_units(ctx: AnalysisContext, options: Options) -> int:
    return 2


def component_names(model: Any, cache: Any, n_layers: int) -> list[tuple[str, str]]:
    """(label, hook name) in ``decompose_resid`` order: embed, pos_embed, 0_attn_out, 0_mlp_out, ...

    A hybrid's mixer layer is ``({layer}_mixer_out, "resid_mid-resid_pre")`` and an MLP without
    ``hook_mlp_out`` ``({layer}_mlp_out, "resid_post-resid_mid")``: a difference of two hooks
    (``component_at_end`` reads it)."""
    names = [(label, name) for label, name in (("embed", hooks.EMBED), ("pos_embed", hooks.POS_EMBED)) if name in cache]
    with_heads = set(hooks.attention_layers(model))
    keys = set(cache.keys()) if hasattr(cache, "keys") else set()
    for layer in range(n_layers):
        if layer in with_heads:
            names.append((f"{layer}_attn_out", hooks.hook_name("attn_out", layer)))
        else:
            names.append((f"{layer}_mixer_out", f"{hooks.hook_name('resid_mid', layer)}-{hooks.hook_name('resid_pre', layer)}"))
        if _has_mlp(model):
            mlp = hooks.hook_name("mlp_out", layer)
            if len(with_heads) == n_layers or mlp in keys:
                names.append((f"{layer}_mlp_out", mlp))
            else:
                names.append((f"{layer}_mlp_out", f"{hooks.hook_name('resid_post', layer)}-{hooks.hook_name('resid_mid', layer)}"))
    return names


def component_at_end(cache: Any, name: str, end: "torch.Tensor") -> "torch.Tensor":
    """[prompt, d_model] of one ``component_names`` entry at END (a hook, or ``"a-b"``: their difference)."""
    from ioi_desktop.core.analyses.metrics import at_end

    if "-" in name:
        first, second = name.split("-")
        return at_end(cache[first], end) - at_end(cache[second], end)
    return at_end(cache[name], end)


def final_ln_at_end(model: Any, cache: Any, stack: "torch.Tensor", end: "torch.Tensor") -> "torch.Tensor":
    """Apply the final LayerNorm with the run's cached scale to a [component, prompt, d_model] stack at END."""
    from ioi_desktop.core.analyses.metrics import at_end

    kind = getattr(model.cfg, "normalization_type", None)
    if kind not in ("LN", "LNPre", "RMS", "RMSPre"):
        return stack
    if kind in ("LN", "LNPre") and not getattr(model.cfg, "final_rms", False):
        stack = stack - stack.mean(dim=-1, keepdim=True)
    scale = at_end(cache[hooks.LN_FINAL_SCALE], end)
    return stack / scale


def head_outputs_at_end(model: Any, cache: Any, layer: int, end: "torch.Tensor") -> "torch.Tensor":
    """[head, prompt, d_model]: each head's write into the residual stream at END (``z @ W_O``)."""
    import torch

    from ioi_desktop.core.analyses.metrics import at_end

    attn = model.blocks[layer].attn
    z = at_end(cache[hooks.hook_name("z", layer)], end)
    W_O = attn.W_O
    if z.dtype != W_O.dtype:
        dtype = torch.promote_types(z.dtype, W_O.dtype)
        z, W_O = z.to(dtype), W_O.to(dtype)
    result = torch.einsum("phd,hdm->hpm", z, W_O)
    scale = getattr(attn, "_result_contribution_scale", 1.0)
    return result if scale == 1.0 else result * scale


def run(ctx: AnalysisContext, options: Options, progress: Progress) -> Result:
    import torch

    from ioi_desktop.core.analyses.metrics import (
        as_float32,
        at_end,
        end_index,
        logit_diff_at_end,
        logit_diff_directions,
        prompt_labels,
        unembed_bias_diff,
    )

    model, batch = ctx.handle.model, ctx.batch
    n_layers, n_heads = int(ctx.handle.info.n_layers), int(ctx.handle.info.n_heads)
    with_heads = hooks.attention_layers(model)  # rows of the head grids (a hybrid's attention layers)
    progress.set_total(2)
    cache = ctx.runs.cache("clean")
    with torch.no_grad():
        directions = logit_diff_directions(model, batch)
        end = end_index(batch, directions.device)
        components = component_names(model, cache, n_layers)
        stack = torch.stack([component_at_end(cache, name, end) for _, name in components], dim=0)
        by_component = torch.einsum("cpd,pd->pc", final_ln_at_end(model, cache, stack, end).float(), directions)
        progress.advance(1, "attribution per component")
        progress.check_cancelled()
        by_head = torch.zeros(by_component.shape[0], len(with_heads), n_heads, device=directions.device)
        for row, layer in enumerate(with_heads):
            heads = final_ln_at_end(model, cache, head_outputs_at_end(model, cache, layer, end), end).float()
            by_head[:, row] = torch.einsum("hpd,pd->ph", heads, directions)
        progress.advance(1, "attribution per head")
        bias = unembed_bias_diff(model, batch)
        real = logit_diff_at_end(ctx.runs.logits("clean"), batch).float()
        error = (by_component.sum(dim=1) + bias - real).abs().max()
    return Result(
        dla_components=as_float32(by_component.mean(dim=0)),
        dla_components_by_prompt=as_float32(by_component),
        dla_head=as_float32(by_head.mean(dim=0)),
        dla_head_by_prompt=as_float32(by_head),
        dla_unembed_bias=as_float32(bias),
        component_labels=tuple(label for label, _ in components),
        layer_labels=None if len(with_heads) == n_layers else tuple(str(layer) for layer in with_heads),
        attention_layers=None if len(with_heads) == n_layers else list(with_heads),
        prompt_labels=prompt_labels(batch),
        logit_diff_mean=float(real.mean()),
        unembed_bias_mean=float(bias.mean()),
        max_reconstruction_error=float(error),
        ln="final LayerNorm applied with the clean run's cached scale (apply_ln_to_stack)",
    )
