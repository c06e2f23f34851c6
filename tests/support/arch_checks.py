"""Every analysis of a run compared with TransformerLens's own computation, as max differences.

``max_differences(handle, batch, results)`` returns ``{analysis: max abs
difference}`` for the analyses in ``results`` that have an independent
TransformerLens reference here:

- ``logit_diff``: the logits of ``model.run_with_cache`` on each prompt;
- ``logit_lens``: ``cache.accumulated_resid(incl_mid=...)`` +
  ``apply_ln_to_stack`` (no ``_mid`` points for parallel blocks);
- ``dla``: ``decompose_resid`` and ``stack_head_results`` with ``apply_ln``
  (hybrids, where those walk every layer's attention: each mixer's
  ``resid_mid - resid_pre`` and each attention head's ``z @ W_O`` from the cache
  through ``apply_ln_to_stack``);
- ``attention``: ``cache["pattern", layer]`` (a hybrid's attention layers only);
- ``patching``: ``transformer_lens.patching`` (``get_act_patch_*``: k and v per
  key-value head, as TransformerLens returns them) on the raw grids;
- ``attribution_patching``: (clean - corrupted) x gradient from plain autograd
  through the model's hooks, summed as each grid sums it;
- ``head_scores``: the same repeated token sequences run through
  ``model.run_with_cache``; each head's mean attention on the key a previous-token
  (q - 1), duplicate-token (q - n) or induction head (q - n + 1) reads, over the
  queries the analysis documents (a hybrid's attention layers only);
- ``path_patching``: the q/k/v grids against hooked runs in which the senders'
  clean-minus-corrupted write ``z @ W_O`` reaches only the receiver's q (or its
  key-value head's k or v): the receiver's ``hook_{q,k,v}`` as the model computes it
  from the patched ``resid_pre``, patched into that one head of the corrupted run
  (``get_act_patch_direct_path`` refuses k and v under grouped-query attention).

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
    if "dla" in results and results["dla"].meta.get("attention_layers"):
        found["dla"] = _hybrid_dla(model, batch, results["dla"], cache, directions)
    elif "dla" in results:
        stack = cache.decompose_resid(apply_ln=True, pos_slice=-1)
        components = torch.einsum("cpd,pd->pc", stack.float(), directions)
        heads = cache.stack_head_results(layer=-1, pos_slice=-1, apply_ln=True)
        per_head = torch.einsum("hpd,pd->ph", heads.float(), directions).reshape(
            len(batch.end_pos), handle.info.n_layers, handle.info.n_heads)
        arrays = results["dla"].arrays
        found["dla"] = _worst((arrays["dla_components_by_prompt"], components), (arrays["dla_head_by_prompt"], per_head))
    if "attention" in results:
        patterns = results["attention"].arrays["attention_pattern"]
        # A hybrid's rows are its attention layers only (attention_layers names them).
        layers = results["attention"].meta.get("attention_layers") or list(range(handle.info.n_layers))
        assert patterns.shape[1] == len(layers)
        found["attention"] = _worst(*[(patterns[:, row], cache["pattern", layer]) for row, layer in enumerate(layers)])
    if "patching" in results:
        found["patching"] = _patching(model, batch, results["patching"], cache)
    if "attribution_patching" in results:
        found["attribution_patching"] = _attribution(model, batch, results["attribution_patching"], cache)
    if "head_scores" in results:
        found["head_scores"] = _head_scores(handle, results["head_scores"])
    if "path_patching" in results and any(k in results["path_patching"].arrays for k in _PATH_GRIDS):
        with torch.no_grad():
            corrupt_cache = model.run_with_cache(_tokens(batch, "corrupt"))[1]
        found["path_patching"] = _path_patching(model, batch, results["path_patching"], cache, corrupt_cache)
    return found


_PATH_GRIDS = ("path_patch_q_raw", "path_patch_k_raw", "path_patch_v_raw", "path_patch_k_kv_raw", "path_patch_v_kv_raw")


def _hybrid_dla(model, batch, result, cache, directions) -> float:
    import torch

    n_layers = int(model.cfg.n_layers)
    layers = result.meta["attention_layers"]
    keys = set(cache.keys())
    parts, labels = [cache["hook_embed"]], ["embed"]
    if "hook_pos_embed" in keys:
        parts.append(cache["hook_pos_embed"])
        labels.append("pos_embed")
    for layer in range(n_layers):
        pre, mid, post = (cache[f"blocks.{layer}.hook_resid_{n}"] for n in ("pre", "mid", "post"))
        parts.append(cache[f"blocks.{layer}.hook_attn_out"] if layer in layers else mid - pre)
        labels.append(f"{layer}_{'attn' if layer in layers else 'mixer'}_out")
        parts.append(post - mid)
        labels.append(f"{layer}_mlp_out")
    assert list(result.meta.get("component_labels") or result.labels["component"]) == labels
    stack = cache.apply_ln_to_stack(torch.stack([p[:, -1] for p in parts]), layer=-1, pos_slice=-1)
    components = torch.einsum("cpd,pd->pc", stack.float(), directions)
    heads = torch.stack([torch.einsum("phd,hdm->hpm", cache["z", layer][:, -1], model.blocks[layer].attn.W_O)
                         for layer in layers])  # [layer, head, prompt, d_model]
    shape = heads.shape
    per_head = cache.apply_ln_to_stack(heads.reshape(-1, *shape[2:]), layer=-1, pos_slice=-1).reshape(shape)
    per_head = torch.einsum("lhpd,pd->plh", per_head.float(), directions)
    arrays = result.arrays
    return _worst((arrays["dla_components_by_prompt"], components), (arrays["dla_head_by_prompt"], per_head))


def _head_scores(handle, result) -> float:
    import torch

    from ioi_desktop.core.analyses.head_scores import make_sequences

    model, meta = handle.model, result.meta
    chosen = {key: meta[key] for key in ("seq_len", "batch", "seed", "prepend_bos", "token_pool")}
    tokens, _drawn = make_sequences(handle.tokenizer, int(model.cfg.d_vocab), chosen)
    with torch.no_grad():
        _logits, cache = model.run_with_cache(tokens)
    n, bos = int(meta["seq_len"]), int(bool(meta["prepend_bos"]))
    layers = meta.get("attention_layers") or list(range(handle.info.n_layers))
    worst = 0.0
    for kind, offset in (("prev", 1), ("dup", n), ("induction", n - 1)):
        # With BOS: every query after BOS (prev) or the second copy's queries; without: every query with that key.
        first = (1 if kind == "prev" else n + 1) if bos else offset
        queries = torch.arange(first, tokens.shape[1])
        grid = result.arrays[f"head_score_{kind}"]
        assert grid.shape[0] == len(layers)
        for row, layer in enumerate(layers):
            pattern = cache["pattern", layer].float()  # [batch, head, query, key]
            expected = pattern[:, :, queries, queries - offset].mean(dim=(0, 2))
            worst = max(worst, _worst((grid[row], expected)))
    return worst


def _hooked_path(model, batch, clean, corrupt, senders, layer, index, kind) -> float:
    """Mean logit difference with the senders' summed write reaching only input ``index`` of ``blocks.{layer}``'s
    ``kind`` (a query head for q, a key-value head for k and v), in two TransformerLens runs: the
    corrupted run with the write added to ``blocks.{layer}.hook_resid_pre`` gives that layer's
    ``hook_{kind}`` as the model computes it from the patched residual stream; then the corrupted run
    with only that head's slice of ``hook_{kind}`` replaced by it. (TransformerLens's split q/k/v
    input is not used here: on some bridges, Bloom's for one, that fork is after ``ln1``.)"""
    delta = 0
    for l, h in senders:
        name = f"blocks.{l}.attn.hook_z"
        delta = delta + (clean[name][:, :, h] - corrupt[name][:, :, h]) @ model.blocks[l].attn.W_O[h]
    seen = {}

    def add(resid, hook):
        return resid + delta

    def keep(activation, hook):
        seen["value"] = activation.clone()
        return activation

    def put(activation, hook):
        activation = activation.clone()
        activation[:, :, index] = seen["value"][:, :, index]
        return activation

    target = f"blocks.{layer}.attn.hook_{kind}"
    model.run_with_hooks(_tokens(batch, "corrupt"), fwd_hooks=[(f"blocks.{layer}.hook_resid_pre", add), (target, keep)])
    logits = model.run_with_hooks(_tokens(batch, "corrupt"), fwd_hooks=[(target, put)])
    return float(_diff(logits, batch).mean())


def _path_patching(model, batch, result, clean, corrupt) -> float:
    import torch

    n_heads = int(model.cfg.n_heads)
    group = n_heads // int(result.meta.get("n_key_value_heads") or n_heads)
    worst = 0.0
    with torch.no_grad():
        for kind in "qkv":
            name = next((n for n in (f"path_patch_{kind}_kv_raw", f"path_patch_{kind}_raw") if n in result.arrays), None)
            if name is None:
                continue
            raw = result.arrays[name]
            if result.meta["question"] == "reverse":
                layer, head = result.meta["receiver_head"]
                index = head if kind == "q" else head // group
                cells = [((l, h), [(l, h)], layer, index) for l in range(layer) for h in range(n_heads)]
            else:
                senders = [tuple(s) for s in result.meta["senders"]]
                cells = [((layer, index), [s for s in senders if s[0] < layer], layer, index)
                         for layer in range(raw.shape[0]) for index in range(raw.shape[1])
                         if any(s[0] < layer for s in senders)]
            for cell, senders, layer, index in cells:
                value = _hooked_path(model, batch, clean, corrupt, senders, layer, index, kind)
                worst = max(worst, abs(float(raw[cell]) - value))
    return worst


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
            reference = tl_reference_cells(model, batch, sweep, clean_cache, positions,
                                           layers=result.meta.get("attention_layers"))
        worst = max(worst, max(abs(float(raw[cell]) - value) for cell, value in reference.items()))
    return worst


def _attribution(model, batch, result, clean_cache) -> float:
    import torch

    from ioi_desktop.core.analyses.patching import SWEEPS
    from ioi_desktop.core.hooks import hook_name

    # A hybrid's rows are its attention layers (attention_layers names them).
    layers = result.meta.get("attention_layers") or list(range(model.cfg.n_layers))
    names = [hook_name(SWEEPS[s].kind, layer) for s in result.meta["sweeps"] for layer in layers]
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
        for layer in layers:
            name = hook_name(SWEEPS[sweep].kind, layer)
            grad = grads[name] if grads[name] is not None else torch.zeros_like(captured[name])
            product = (clean_cache[name] - captured[name].detach()) * grad
            rows.append(product.sum(dim=(0, 2, 3)) if SWEEPS[sweep].kind == "pattern" else product.sum(dim=(0, 1, 3)))
        expected = float(metric) + torch.stack(rows).detach()
        worst = max(worst, _worst((result.arrays[f"atp_{sweep}_raw"], expected)))
    return worst
