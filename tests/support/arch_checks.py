"""Every analysis of a run compared with TransformerLens's own computation, as max differences.

``max_differences(handle, batch, results)`` returns ``{analysis: max abs
difference}`` for the analyses in ``results`` that have an independent
TransformerLens reference here:

- ``logit_diff``: the logits of ``model.run_with_cache`` on each prompt;
- ``logit_lens``: ``cache.accumulated_resid(incl_mid=...)`` +
  ``apply_ln_to_stack`` (no ``_mid`` points for parallel blocks);
- ``dla``: ``decompose_resid`` and ``stack_head_results`` with ``apply_ln``;
- ``attention``: ``cache["pattern", layer]``;
- ``patching``: ``transformer_lens.patching`` (``get_act_patch_*``: k and v per
  key-value head, as TransformerLens returns them) on the raw grids;
- ``attribution_patching``: (clean - corrupted) x gradient from plain autograd
  through the model's hooks, summed as each grid sums it.

Prompts must be of equal length (the matrix uses the notebook's pairs), so one
batched TransformerLens run is the unpadded reference.
"""

from __future__ import annotations

import numpy as np


def _tokens(batch, which="clean"):
    import torch

    return torch.as_tensor(np.asarray(batch.clean_tokens if which == "clean" else batch.corrupt_tokens))


def _directions(model, batch):
    import torch

    c = torch.as_tensor(np.asarray(batch.correct_ids))
    i = torch.as_tensor(np.asarray(batch.incorrect_ids))
    return (model.W_U[:, c] - model.W_U[:, i]).T.float()  # [prompt, d_model]


def _diff(logits, batch):
    import torch

    rows = torch.arange(logits.shape[0])
    end = torch.as_tensor(np.asarray(batch.end_pos))
    at_end = logits[rows, end].float()
    return (at_end[rows, torch.as_tensor(np.asarray(batch.correct_ids))]
            - at_end[rows, torch.as_tensor(np.asarray(batch.incorrect_ids))])


def _worst(*pairs) -> float:
    return max(float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))
               if np.size(a) else 0.0 for a, b in pairs)


def max_differences(handle, batch, results) -> dict[str, float]:
    import torch

    from ioi_desktop.core.analyses.logit_lens import has_resid_mid

    model = handle.model
    assert bool(np.all(np.asarray(batch.lengths) == np.asarray(batch.lengths)[0])), "equal-length prompts only"
    found: dict[str, float] = {}
    with torch.no_grad():
        clean_logits, cache = model.run_with_cache(_tokens(batch))
        corrupt_logits = model(_tokens(batch, "corrupt"))
    clean_diff, corrupt_diff = _diff(clean_logits, batch), _diff(corrupt_logits, batch)
    directions = _directions(model, batch)
    if "logit_diff" in results:
        arrays = results["logit_diff"].arrays
        found["logit_diff"] = _worst((arrays["logit_diff_clean"], clean_diff), (arrays["logit_diff_corrupt"], corrupt_diff))
    if "logit_lens" in results:
        stack = cache.accumulated_resid(layer=-1, incl_mid=has_resid_mid(model), pos_slice=-1)
        stack = cache.apply_ln_to_stack(stack, layer=-1, pos_slice=-1)  # [point, prompt, d_model]
        expected = torch.einsum("tpd,pd->pt", stack.float(), directions)
        found["logit_lens"] = _worst((results["logit_lens"].arrays["logit_lens_logit_diff_by_prompt"], expected))
    if "dla" in results:
        stack = cache.decompose_resid(apply_ln=True, pos_slice=-1)
        components = torch.einsum("cpd,pd->pc", stack.float(), directions)
        heads = cache.stack_head_results(layer=-1, pos_slice=-1, apply_ln=True)
        per_head = torch.einsum("hpd,pd->ph", heads.float(), directions).reshape(
            len(batch.end_pos), handle.info.n_layers, handle.info.n_heads)
        arrays = results["dla"].arrays
        found["dla"] = _worst((arrays["dla_components_by_prompt"], components), (arrays["dla_head_by_prompt"], per_head))
    if "attention" in results:
        patterns = results["attention"].arrays["attention_pattern"]
        found["attention"] = _worst(*[(patterns[:, layer], cache["pattern", layer])
                                      for layer in range(handle.info.n_layers)])
    if "patching" in results:
        found["patching"] = _patching(model, batch, results["patching"], cache)
    if "attribution_patching" in results:
        found["attribution_patching"] = _attribution(model, batch, results["attribution_patching"], cache)
    return found


def _patching(model, batch, result, clean_cache) -> float:
    import torch

    from tests.support.patching_helpers import tl_reference_cells

    worst = 0.0
    # Position grids are compared at the last positions (the names and END), to keep the matrix fast.
    positions = list(range(max(0, batch.clean_tokens.shape[1] - 4), batch.clean_tokens.shape[1]))
    for sweep in result.meta["sweeps"]:
        if sweep == "head_z_by_pos":
            continue  # the same hook as head_z, per position; the engines share the code path
        raw = result.arrays[f"patch_{sweep}_raw"]
        with torch.no_grad():
            reference = tl_reference_cells(model, batch, sweep, clean_cache, positions)
        worst = max(worst, max(abs(float(raw[cell]) - value) for cell, value in reference.items()))
    return worst


def _attribution(model, batch, result, clean_cache) -> float:
    import torch

    from ioi_desktop.core.analyses.patching import SWEEPS
    from ioi_desktop.core.hooks import hook_name

    names = [hook_name(SWEEPS[s].kind, layer) for s in result.meta["sweeps"] for layer in range(model.cfg.n_layers)]
    captured = {}

    def keep(activation, hook):
        activation.requires_grad_(True)
        captured[hook.name] = activation
        return activation

    def start(activation, hook):
        return activation.detach().requires_grad_(True)

    with torch.enable_grad(), model.hooks(fwd_hooks=[("hook_embed", start)] + [(n, keep) for n in set(names)]):
        metric = _diff(model(_tokens(batch, "corrupt")), batch).mean()
        grads = dict(zip(captured, torch.autograd.grad(metric, list(captured.values()), allow_unused=True)))
    worst = 0.0
    for sweep in result.meta["sweeps"]:
        if "pos" in SWEEPS[sweep].axes:
            continue  # position grids sum the same products over other axes; checked in tests/core
        rows = []
        for layer in range(model.cfg.n_layers):
            name = hook_name(SWEEPS[sweep].kind, layer)
            grad = grads[name] if grads[name] is not None else torch.zeros_like(captured[name])
            product = (clean_cache[name] - captured[name].detach()) * grad
            rows.append(product.sum(dim=(0, 2, 3)) if SWEEPS[sweep].kind == "pattern" else product.sum(dim=(0, 1, 3)))
        expected = float(metric) + torch.stack(rows).detach()
        worst = max(worst, _worst((result.arrays[f"atp_{sweep}_raw"], expected)))
    return worst
