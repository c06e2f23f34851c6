"""Attribution patching: a linear estimate of every activation patch from one backward pass.

Exact activation patching (``patching``) runs the model once per patched cell.
Attribution patching (Nanda 2023; AtP in Kramar et al. 2024) replaces each run
by its first-order Taylor expansion around the corrupted run:

    patched - corrupted  ~=  sum over the patched entries of
                             (clean activation - corrupted activation) * d metric / d activation

where the gradient is taken once, on the corrupted run, for every activation
at the same time. The metric is the set-mean logit difference at END, as in
``patching``, and scores are normalized the same way,
``estimate / (clean - corrupted)``, so ``atp_<grid>`` sits next to the exact
``patch_<grid>``; their difference is the estimate's error
(:func:`estimate_error`, which the panels show next to both). The estimate is known to be poor where the model is far
from linear: MLP0, the residual stream and saturated attention heads.

Grids (same axes and position alignment as ``patching``): ``atp_resid_pre``,
``atp_attn_out``, ``atp_mlp_out`` [layer, pos]; ``atp_head_z``,
``atp_head_pattern``, ``atp_head_q`` [layer, head]; ``atp_head_v``,
``atp_head_k`` [layer, kv_head] (per key-value head, as in ``patching``);
``atp_head_z_by_pos`` [layer, pos, head]; each also as ``<name>_raw``
(corrupted mean + estimate, comparable with ``patch_<grid>_raw``).

Hybrid models: every grid has the attention layers only, as in ``patching``
(``layer_labels``, ``attention_layers``).

Sign convention: TransformerLens's denoising convention
(``transformer_lens.tools.analysis.attribution_patch``): the gradient is taken
on the corrupted run and the estimate points toward the clean activation, so
a positive score means patching the clean activation in raises the logit
difference. Converted, ours equals TL's node scores: ``atp_head_z[l, h] x
(clean - corrupted)`` = TL's ``attn_head_out`` scores of head (l, h) averaged
over pairs and summed over positions, ``atp_mlp_out[l, pos] x (clean -
corrupted)`` = its ``mlp_out`` score at (l, pos) (tested). Ours rather than
TL's tool because it covers only embed, head-z and MLP-out nodes (not the
resid_pre, attn_out, v, pattern, q and k grids) and runs two forwards and a
backward per pair, where this runs one batched forward and backward for the
whole set (GPT-2-small-shaped model, 8 pairs, head z + MLP out: 0.85 s vs
7.5 s, ``benchmarks/bench_tl_tools.py``).

Options: ``sweeps`` (names as in ``patching.SWEEPS``, default all).
"""

from __future__ import annotations


import numpy as np
from jaxtyping import Float32

from ioi_desktop.core.analyses import patching
from ioi_desktop.core.analyses.base import AnalysisContext, AnalysisOptions, AnalysisResult, Positions, Progress, array, labels, meta, option
from ioi_desktop.core.analyses.patching import (
    SWEEPS,
    kv_head_labels,
    logit_diff_at_end,
    normalization_span,
    position_axis,
)
from ioi_desktop.core.errors import AnalysisError

NAME = "attribution_patching"
PREFIX = "atp_"

NORMALIZATION = (
    "estimate / (clean - corrupted) with estimate = sum of (clean - corrupted activation) x gradient "
    "of the set-mean END logit difference on the corrupted run; the error against exact patching "
    "is atp_<grid> - patch_<grid>; *_raw arrays hold corrupted mean + estimate"
)


class Options(AnalysisOptions, analysis=NAME):
    sweeps: tuple[str, ...] = option(tuple(SWEEPS), "The grids to estimate (the same names as patching's)",
                                     choices=tuple(SWEEPS))


class Result(AnalysisResult, analysis=NAME, title="Attribution patching"):
    atp_resid_pre: Float32[np.ndarray, "layer pos"] | None = array("estimate of patch_resid_pre")
    atp_resid_pre_raw: Float32[np.ndarray, "layer pos"] | None = array("corrupted mean + estimate")
    atp_attn_out: Float32[np.ndarray, "layer pos"] | None = array("estimate of patch_attn_out")
    atp_attn_out_raw: Float32[np.ndarray, "layer pos"] | None = array("corrupted mean + estimate")
    atp_mlp_out: Float32[np.ndarray, "layer pos"] | None = array("estimate of patch_mlp_out")
    atp_mlp_out_raw: Float32[np.ndarray, "layer pos"] | None = array("corrupted mean + estimate")
    atp_head_z: Float32[np.ndarray, "layer head"] | None = array("estimate of patch_head_z")
    atp_head_z_raw: Float32[np.ndarray, "layer head"] | None = array("corrupted mean + estimate")
    atp_head_v: Float32[np.ndarray, "layer kv_head"] | None = array("estimate of patch_head_v")
    atp_head_v_raw: Float32[np.ndarray, "layer kv_head"] | None = array("corrupted mean + estimate")
    atp_head_pattern: Float32[np.ndarray, "layer head"] | None = array("estimate of patch_head_pattern")
    atp_head_pattern_raw: Float32[np.ndarray, "layer head"] | None = array("corrupted mean + estimate")
    atp_head_q: Float32[np.ndarray, "layer head"] | None = array("estimate of patch_head_q")
    atp_head_q_raw: Float32[np.ndarray, "layer head"] | None = array("corrupted mean + estimate")
    atp_head_k: Float32[np.ndarray, "layer kv_head"] | None = array("estimate of patch_head_k")
    atp_head_k_raw: Float32[np.ndarray, "layer kv_head"] | None = array("corrupted mean + estimate")
    atp_head_z_by_pos: Float32[np.ndarray, "layer pos head"] | None = array("estimate of patch_head_z_by_pos")
    atp_head_z_by_pos_raw: Float32[np.ndarray, "layer pos head"] | None = array("corrupted mean + estimate")
    pos_labels: Positions | None = labels("pos", "positions (equal-length sets) or named roles")
    kv_head_labels: tuple[str, ...] | None = labels(
        "kv_head", "key-value heads and the query heads that share each, e.g. 'KV0 (H0-H1)'")
    layer_labels: tuple[str, ...] | None = labels(
        "layer", "hybrids: the real layer index of each row (their attention layers only); None: every layer")
    attention_layers: list | None = meta("hybrids: the layers with attention, one per row; None: every layer")
    refused: dict | None = meta("grids that were not estimated, each with the reason in one sentence")
    engine: str | None = meta("always 'bridge' (one hooked forward and backward)")
    normalization: str | None = meta("how scores are normalized")
    clean_logit_diff: float | None = meta("clean mean logit difference")
    corrupt_logit_diff: float | None = meta("corrupted mean logit difference")
    position_alignment: str | None = meta("'absolute' positions or named 'roles'")
    sweeps: list | None = meta("the sweeps estimated")


def array_name(sweep: str) -> str:
    """``atp_head_z`` for sweep ``head_z``."""
    return PREFIX + SWEEPS[sweep].array[len("patch_"):]


def error_grid(exact: np.ndarray, estimate: np.ndarray) -> np.ndarray:
    """The estimate's error, ``estimate - exact`` (normalized scores; NaN where a row is still missing)."""
    return np.ascontiguousarray(np.asarray(estimate, np.float32) - np.asarray(exact, np.float32))


def estimate_error(exact: patching.Result | None, estimate: Result | None, sweep: str) -> np.ndarray | None:
    """``atp_<grid> - patch_<grid>`` of two results, or None unless both grids exist with one shape."""
    if exact is None or estimate is None:
        return None
    a, b = getattr(exact, SWEEPS[sweep].array), getattr(estimate, array_name(sweep))
    if a is None or b is None or a.shape != b.shape:
        return None
    return error_grid(a, b)


def hooks_needed(ctx: AnalysisContext, options: Options) -> set[str]:
    """The clean activations of every patched kind (the corrupted ones come from its own pass)."""
    from ioi_desktop.core.hooks import hook_name

    kinds = {SWEEPS[name].kind for name in options.sweeps}
    model = ctx.handle.model
    return patching.recorded(model, {hook_name(kind, layer) for kind in kinds
                                     for layer in patching.attention_layers(model)})


def count_units(ctx: AnalysisContext, options: Options) -> int:
    """Progress units ``run`` reports: the gradient pass, then one per grid."""
    return 1 + len(options.sweeps)


def corrupted_gradients(model, tokens, targets, names: list[str]):
    """Corrupted-run activations at ``names`` and the gradient of the metric with respect to each.

    The graph starts at the token embedding (made a leaf that requires grad), so
    no parameter gradient is computed or stored and the model is left untouched.
    Returns ``(activations, gradients, per-prompt metric)``.
    """
    import torch

    from ioi_desktop.core.hooks import EMBED

    captured: dict[str, torch.Tensor] = {}

    def start_graph(activation, hook):
        return activation.detach().requires_grad_(True)

    def capture(name):
        # Keyed by the requested name (aliased hook points report another name). Returned
        # so the model runs on exactly this tensor: some bridge hooks show a reshaped view
        # of the real activation, and only a returned tensor is fed back into the forward.
        def hook_fn(activation, hook):
            captured[name] = activation
            return activation

        return hook_fn

    fwd_hooks = [(EMBED, start_graph)] + [(name, capture(name)) for name in names]
    with torch.enable_grad(), model.hooks(fwd_hooks=fwd_hooks):
        logits = model(tokens)
        per_prompt = logit_diff_at_end(logits, targets)
        acts = [captured[n] for n in names]
        grads = torch.autograd.grad(per_prompt.mean(), acts, allow_unused=True)
    # On a model split across GPUs each layer's activation and gradient is on its GPU: gather them home.
    home = tokens.device
    gradients = {
        name: (torch.zeros_like(act) if grad is None else grad).detach().to(home)
        for name, act, grad in zip(names, acts, grads)
    }
    return {name: act.detach().to(home) for name, act in zip(names, acts)}, gradients, per_prompt.detach()


def estimate_rows(sweep: str, delta, grad, positions) -> "torch.Tensor":
    """One layer's estimated change of the metric for every entry of ``sweep``'s grid row.

    ``delta`` = clean - corrupted activation and ``grad`` its metric gradient,
    both in the hook's layout; ``positions`` [entry, prompt] (-1 = absent).
    """
    import torch

    spec = SWEEPS[sweep]
    product = delta * grad
    if spec.axes in (("layer", "head"), ("layer", "kv_head")):
        if spec.kind == "pattern":  # [prompt, head, query_pos, key_pos]
            return product.sum(dim=(0, 2, 3))
        return product.sum(dim=(0, 1, 3))  # [prompt, pos, head, d_head]
    per_pos = product.sum(dim=-1)  # [prompt, pos] or [prompt, pos, head]
    positions = torch.as_tensor(positions, dtype=torch.long, device=per_pos.device)
    prompt = torch.arange(positions.shape[1], device=per_pos.device)
    picked = per_pos[prompt[None, :], positions.clamp(min=0)]  # [entry, prompt, (head)]
    present = (positions >= 0).to(picked.dtype)
    if picked.dim() == 3:
        present = present[..., None]
    return (picked * present).sum(dim=1)


def run(ctx: AnalysisContext, options: Options, progress: Progress) -> Result:
    """One forward and one backward pass on the corrupted prompts, then every estimate grid."""
    import torch

    from ioi_desktop.core.hooks import hook_name

    names = list(options.sweeps)
    model, batch = ctx.handle.model, ctx.batch
    layers = patching.attention_layers(model)  # the rows: every layer, or a hybrid's attention layers
    n_layers = len(layers)
    hybrid = n_layers < int(model.cfg.n_layers)
    progress.set_total(1 + len(names))
    refused = patching.unrecorded_sweeps(ctx, names)
    if hybrid:
        names = [name for name in names if name not in refused]
        if not names:
            raise AnalysisError(" ".join(refused.values()), "Choose other grids (head_z, head_v, head_q, ...).")
    if "head_pattern" in names:
        from ioi_desktop.core.engine.edits import discarded_edit_sentence, edit_reaches_output

        longest = int(np.asarray(batch.end_pos).argmax())
        probe = torch.as_tensor(np.asarray(batch.corrupt_tokens)[longest : longest + 1, : int(batch.end_pos[longest]) + 1],
                                dtype=torch.long, device=ctx.runs.logits("clean").device)
        if not edit_reaches_output(model, probe, "pattern"):
            refused["head_pattern"] = discarded_edit_sentence(ctx.handle.info.architecture, "pattern", "head_pattern")
            names = [name for name in names if name != "head_pattern"]
            if not names:
                raise AnalysisError(refused["head_pattern"], "Choose other grids (head_z, head_v, head_q, ...).")
    kinds = sorted({SWEEPS[name].kind for name in names})
    hooks = [hook_name(kind, layer) for kind in kinds for layer in layers]
    ctx.runs.require("clean", set(hooks))
    clean_cache = ctx.runs.cache("clean")
    clean_logits = ctx.runs.logits("clean")
    device = clean_logits.device
    to_long = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.long, device=device)
    targets = (to_long(batch.end_pos), to_long(batch.correct_ids), to_long(batch.incorrect_ids))
    progress.check_cancelled()
    corrupt_acts, grads, corrupt_per_prompt = corrupted_gradients(
        model, to_long(batch.corrupt_tokens), targets, hooks
    )
    progress.advance(1, "attribution patching: gradients")
    clean_mean = float(logit_diff_at_end(clean_logits, targets).float().mean())
    corrupt_mean = float(corrupt_per_prompt.float().mean())
    span = normalization_span(clean_mean, corrupt_mean, "attribution")
    positions, pos_labels, alignment = position_axis(batch)
    arrays: dict[str, np.ndarray] = {}
    axes: dict[str, tuple[str, ...]] = {}
    for name in names:
        progress.check_cancelled()
        kind = SWEEPS[name].kind
        rows = []
        for index, layer in enumerate(layers):
            hook = hook_name(kind, layer)
            delta = clean_cache[hook].to(grads[hook].dtype) - corrupt_acts[hook]
            row = estimate_rows(name, delta, grads[hook], positions).float().cpu().numpy()
            progress.rows(array_name(name), index, (row / span).astype(np.float32), (n_layers, *row.shape))
            rows.append(row)
        estimate = np.stack(rows).astype(np.float32)
        arrays[array_name(name)] = np.ascontiguousarray(estimate / span, dtype=np.float32)
        arrays[array_name(name) + "_raw"] = np.ascontiguousarray(corrupt_mean + estimate, dtype=np.float32)
        axes[array_name(name)] = axes[array_name(name) + "_raw"] = SWEEPS[name].axes
        progress.advance(1, f"attribution patching: {name}")
    kv_arrays = [array_name(n) for n in names if "kv_head" in SWEEPS[n].axes]
    kv_labels = kv_head_labels(int(model.cfg.n_heads), int(arrays[kv_arrays[0]].shape[1])) if kv_arrays else None
    return Result(
        **arrays,
        pos_labels=pos_labels if any("pos" in a for a in axes.values()) else None,
        kv_head_labels=kv_labels,
        layer_labels=tuple(str(layer) for layer in layers) if hybrid else None,
        attention_layers=list(layers) if hybrid else None,
        refused=refused or None,
        engine="bridge",
        normalization=NORMALIZATION,
        clean_logit_diff=clean_mean,
        corrupt_logit_diff=corrupt_mean,
        position_alignment=alignment,
        sweeps=names,
    )
