"""Ablation what-if: knock out a set of heads (and MLP layers) and see who takes over.

The clean prompts are run once more with the chosen heads' outputs ``hook_z``
(and the chosen layers' ``hook_mlp_out``) replaced at the chosen positions:

- ``zero``: by 0 (the Exploratory Analysis Demo's backup-name-mover
  experiment: L9H9's z at END);
- ``mean``: by its mean over the prompt set's clean run (at each absolute
  position for ``positions=all``; at each prompt's own role position, averaged
  over prompts, for ``end`` or a role);
- ``reference``: by the same mean over a reference set's clean run (a pairs
  file, e.g. the ABC distribution as in Wang et al. 2022);
- ``resample``: by the value on the corrupted prompt of the same pair (or on
  the reference file's corrupted prompts).

Reported: the new logit difference at END per prompt and on average, the drop
its direct attribution predicts (the ablated heads' summed DLA before the
ablation), and every head's DLA after the ablation next to before. DLA uses
:mod:`~ioi_desktop.core.analyses.dla`'s convention: each head's write
``z @ W_O`` at END, through the final LayerNorm with the *run's own* cached
scale (the ablated run's scale after), projected on ``W_U[correct] -
W_U[incorrect]``. Heads whose DLA rises after the ablation are backup heads;
heads whose DLA grows more negative are negative heads.

The default (``heads`` empty) is the demo's preset "Backup heads of the
strongest DLA head": the head with the largest positive mean DLA at END,
zero-ablated at END. The ablated forward is one pass of the clean prompts
(with its cache of ``hook_z`` and the final LayerNorm scale), so an ablation
with DLA after it costs about one forward pass.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from jaxtyping import Float32

from ioi_desktop.core import hooks
from ioi_desktop.core.analyses.base import AnalysisContext, AnalysisOptions, AnalysisResult, Progress, array, labels, meta, option
from ioi_desktop.core.errors import AnalysisError, FileFormatError, PromptError

NAME = "ablation"
METHODS = ("zero", "mean", "reference", "resample")
PRESET = "Backup heads of the strongest DLA head"


class Options(AnalysisOptions, analysis=NAME):
    heads: str = option("", "Heads to ablate as LAYER.HEAD, comma-separated (e.g. 9.9,9.6); empty: the head "
                        "with the largest positive DLA at END (the backup-name-mover preset)")
    mlp_layers: str = option("", "MLP layers to ablate too, comma-separated (e.g. 0,3); empty: none")
    method: str = option("zero", "What replaces the ablated outputs: zero, the mean over the prompt set, "
                         "the mean over a reference set, or a resample from the corrupted prompts",
                         choices=METHODS)
    positions: str = option("end", "Where to ablate: all, end, or a named role (IO, S1, S2, END, ...)")
    reference: str = option("", "Pairs file (JSON or CSV) of the reference set for method reference "
                            "(or resample); empty: the prompt set itself")


class Result(AnalysisResult, analysis=NAME, title="Ablation what-if"):
    ablation_logit_diff: Float32[np.ndarray, "prompt"] | None = array(
        "logit difference at END after the ablation, clean prompts")
    ablation_logit_diff_clean: Float32[np.ndarray, "prompt"] | None = array(
        "logit difference at END without ablation, clean prompts")
    ablation_dla_head_before: Float32[np.ndarray, "layer head"] | None = array(
        "each head's direct effect at END before the ablation, mean over prompts")
    ablation_dla_head_after: Float32[np.ndarray, "layer head"] | None = array(
        "each head's direct effect at END after the ablation (ablated run's LayerNorm scale), mean over prompts")
    ablation_dla_head_change: Float32[np.ndarray, "layer head"] | None = array(
        "after - before: which heads take over (backup heads rise) or give way")
    ablation_predicted_drop: Float32[np.ndarray, ""] | None = array(
        "the ablated heads' summed DLA before the ablation: the drop direct attribution predicts")
    prompt_labels: tuple[str, ...] | None = labels("prompt", "each prompt's text without BOS")
    heads: list | None = meta("the ablated heads as [layer, head] pairs")
    mlp_layers: list | None = meta("the ablated MLP layers")
    method: str | None = meta("zero, mean, reference or resample")
    ablated_positions: str | None = meta("all, END or the role ablated")
    reference: str | None = meta("the reference pairs file, if one was used")
    preset: str | None = meta("the preset the heads came from, if the heads option was empty")
    mean_clean: float | None = meta("mean logit difference without ablation")
    mean_ablated: float | None = meta("mean logit difference after the ablation")
    actual_drop: float | None = meta("mean_clean - mean_ablated")
    ln: str | None = meta("how the final LayerNorm was applied for DLA")


# ------------------------------------------------------------------ head lists


def parse_heads(text: str, n_layers: int, n_heads: int, what: str = "heads") -> list[tuple[int, int]]:
    """``"9.9, 9.6"`` -> ``[(9, 9), (9, 6)]``, checked against the model's size (AnalysisError otherwise)."""
    found: list[tuple[int, int]] = []
    for part in (p.strip() for p in str(text).replace(";", ",").split(",")):
        if not part:
            continue
        pieces = part.replace("L", "").replace("l", "").replace("H", ".").replace("h", ".").split(".")
        pieces = [p for p in pieces if p]
        if len(pieces) != 2 or not all(p.isdigit() for p in pieces):
            raise AnalysisError(f"The {what} entry {part!r} is not of the form LAYER.HEAD.",
                                "Write heads like 9.9,9.6 (layer 9 head 9, layer 9 head 6).")
        layer, head = int(pieces[0]), int(pieces[1])
        if layer >= n_layers or head >= n_heads:
            raise AnalysisError(
                f"The {what} entry {part} is outside this model, which has {n_layers} layers and {n_heads} "
                "heads per layer.",
                f"Use layers 0-{n_layers - 1} and heads 0-{n_heads - 1}.")
        if (layer, head) not in found:
            found.append((layer, head))
    return found


def parse_layers(text: str, n_layers: int) -> list[int]:
    """``"0,3"`` -> ``[0, 3]``, checked against the model's depth."""
    found: list[int] = []
    for part in (p.strip() for p in str(text).split(",")):
        if not part:
            continue
        if not part.isdigit() or int(part) >= n_layers:
            raise AnalysisError(f"The MLP layer {part!r} is not a layer of this model, which has {n_layers} layers.",
                                f"Use whole numbers from 0 to {n_layers - 1}, comma-separated.")
        if int(part) not in found:
            found.append(int(part))
    return found


def head_text(layer: int, head: int) -> str:
    return f"L{layer}H{head}"


# ------------------------------------------------------------------ DLA


def dla_by_head(model: Any, cache: Any, batch: Any, n_layers: int) -> "torch.Tensor":
    """[prompt, layer, head] direct effect at END, as in :mod:`dla` (the cache's own final LayerNorm scale)."""
    import torch

    from ioi_desktop.core.analyses.dla import final_ln_at_end, head_outputs_at_end
    from ioi_desktop.core.analyses.metrics import end_index, logit_diff_directions

    directions = logit_diff_directions(model, batch)
    end = end_index(batch, directions.device)
    rows = []
    for layer in range(n_layers):
        heads = final_ln_at_end(model, cache, head_outputs_at_end(model, cache, layer, end), end).float()
        rows.append(torch.einsum("hpd,pd->ph", heads, directions))
    return torch.stack(rows, dim=1)


def strongest_dla_head(ctx: AnalysisContext) -> tuple[int, int]:
    """The head with the largest mean DLA at END on the clean run (the preset's head)."""
    import torch

    n_layers = int(ctx.handle.model.cfg.n_layers)
    with torch.no_grad():
        by_head = dla_by_head(ctx.handle.model, ctx.runs.cache("clean"), ctx.batch, n_layers).mean(dim=0)
    flat = int(by_head.flatten().argmax())
    return flat // by_head.shape[1], flat % by_head.shape[1]


def dla_hooks(n_layers: int) -> set[str]:
    return {hooks.LN_FINAL_SCALE, *hooks.hook_names("z", n_layers)}


def changed_heads(result: Result, share: float = 0.02, rising: int = 3, falling: int = 2
                  ) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(heads whose DLA rose, heads whose DLA fell) after the ablation, strongest first, ablated heads left out.

    A change counts when it exceeds ``share`` (2%) of the clean mean logit
    difference: the rising heads are the ones that compensate (backup heads).
    """
    change = result.ablation_dla_head_change
    if change is None:
        return [], []
    ablated = {tuple(pair) for pair in result.heads or []}
    threshold = share * max(abs(result.mean_clean or 0.0), 1e-6)
    order = [tuple(int(i) for i in np.unravel_index(k, change.shape)) for k in np.argsort(change, axis=None)]
    gainers = [(l, h) for l, h in reversed(order) if (l, h) not in ablated and change[l, h] > threshold][:rising]
    losers = [(l, h) for l, h in order if (l, h) not in ablated and change[l, h] < -threshold][:falling]
    return gainers, losers


# ------------------------------------------------------------------ positions


def position_mask(batch: Any, positions: str) -> tuple["np.ndarray", str]:
    """[prompt, pos] bool: where to ablate, and the canonical name (all, END or a role)."""
    width = int(np.asarray(batch.clean_tokens).shape[1])
    n_prompts = len(batch.end_pos)
    text = positions.strip()
    if text.lower() == "all":
        return np.ones((n_prompts, width), dtype=bool), "all"
    roles = {name.lower(): name for name in batch.roles}
    name = roles.get(text.lower())
    if name is None:
        raise AnalysisError(f"The prompt set has no position called {text!r}.",
                            f"Use all, or one of: {', '.join(batch.roles)}.")
    where = np.asarray(batch.roles[name], dtype=np.int64)
    missing = np.flatnonzero(where < 0)
    if missing.size:
        raise AnalysisError(f"Prompt {int(missing[0]) + 1} has no {name} position, so it cannot be ablated there.",
                            "Choose positions all or end, or a role every prompt has.")
    mask = np.zeros((n_prompts, width), dtype=bool)
    mask[np.arange(n_prompts), where] = True
    return mask, name


def read_reference(path: str, handle: Any, batch: Any) -> Any:
    """The reference pairs file tokenized with the model's tokenizer; one-sentence errors otherwise."""
    from ioi_desktop.core.pairfiles import read_pairs
    from ioi_desktop.core.prompts import tokenize_set

    try:
        prompt_set = read_pairs(path)
        return tokenize_set(prompt_set, handle.tokenizer, n_ctx=handle.info.n_ctx,
                            prepend_bos=getattr(handle.info, "prepend_bos", None))
    except (PromptError, FileFormatError) as exc:
        raise AnalysisError(f"The reference set {path} does not fit this model's tokenizer: {exc.message}",
                            exc.hint or "Use a pairs file written for this model.") from exc


def _role_statistic(activation, where) -> "torch.Tensor":
    """Mean over prompts of ``activation[p, where[p]]`` (the per-role mean)."""
    import torch

    rows = torch.arange(activation.shape[0], device=activation.device)
    return activation[rows, where].mean(dim=0)


def _position_mean(activation, lengths) -> "torch.Tensor":
    """[pos, ...]: mean over the prompts long enough to have each position (padding left out)."""
    import torch

    width = activation.shape[1]
    have = (torch.arange(width, device=activation.device)[None, :] < lengths[:, None]).to(activation.dtype)
    shape = have.shape + (1,) * (activation.dim() - 2)
    total = (activation * have.view(shape)).sum(dim=0)
    count = have.sum(dim=0).clamp(min=1).view((width,) + (1,) * (activation.dim() - 2))
    return total / count


def replacements(ctx: AnalysisContext, options: Options, name: str, role: str, source: Any) -> "torch.Tensor":
    """The values that replace hook ``name`` (at the ablated positions) on the clean prompts.

    Returns a tensor broadcastable to the activation [prompt, pos, ...]."""
    import torch

    from ioi_desktop.core.analyses.metrics import end_index

    batch = ctx.batch
    if options.method == "zero":
        return torch.zeros(())
    if options.method == "resample":
        if source is None:
            return ctx.runs.cache("corrupt")[name]
        return source["corrupt"][name]
    if source is None:
        activation, stats_batch = ctx.runs.cache("clean")[name], batch
    else:
        activation, stats_batch = source["clean"][name], source["batch"]
    device = activation.device
    if role == "all":
        lengths = torch.as_tensor(np.asarray(stats_batch.lengths), device=device)
        return _position_mean(activation, lengths).unsqueeze(0)
    where = end_index(stats_batch, device) if role == "END" else torch.as_tensor(
        np.asarray(stats_batch.roles[role], dtype=np.int64), device=device)
    return _role_statistic(activation, where)[None, None]


def _check_reference(ref: Any, batch: Any, path: str, method: str, role: str) -> None:
    n, m = len(batch.end_pos), len(ref.end_pos)
    if method == "resample" and m != n:
        raise AnalysisError(f"The resample set {path} has {m} pairs but the prompt set has {n}.",
                            "Use a corrupted set with one pair per prompt, or leave the reference out.")
    width, ref_width = int(np.asarray(batch.clean_tokens).shape[1]), int(np.asarray(ref.clean_tokens).shape[1])
    if (method == "resample" or role == "all") and not (
            ref.equal_length and batch.equal_length and ref_width == width) and not (
            method == "resample" and np.array_equal(np.asarray(ref.lengths), np.asarray(batch.lengths))):
        raise AnalysisError(
            f"The reference set {path} has prompts of {ref_width} tokens but the prompt set's are {width}, "
            f"so they cannot be matched position by position.",
            "Use a reference set of the same length, or positions end or a role.")
    if role not in ("all", "END"):
        where = np.asarray(ref.roles.get(role, np.full(m, -1)))
        if (where < 0).any():
            raise AnalysisError(f"The reference set {path} has prompts without a {role} position.",
                                "Use a reference set whose prompts all have it, or positions all or end.")


def reference_runs(ctx: AnalysisContext, options: Options, role: str, names: set[str]) -> dict | None:
    """Cached clean/corrupt runs of the reference set (only the hooks ablated), or None."""
    if not options.reference or options.method in ("zero",):
        return None
    if options.method == "mean":
        return None
    import torch

    from ioi_desktop.core.devices import model_device

    ref = read_reference(options.reference, ctx.handle, ctx.batch)
    _check_reference(ref, ctx.batch, options.reference, options.method, role)
    model = ctx.handle.model
    found: dict[str, Any] = {"batch": ref}
    with torch.no_grad():
        for which, tokens in (("clean", ref.clean_tokens), ("corrupt", ref.corrupt_tokens)):
            if options.method == "reference" and which == "corrupt":
                continue
            tokens = torch.as_tensor(np.asarray(tokens, dtype=np.int64), device=model_device(model))
            _logits, cache = model.run_with_cache(tokens, names_filter=sorted(names))
            found[which] = cache
    return found


# ------------------------------------------------------------------ contract


def hooks_needed(ctx: AnalysisContext, options: Options) -> set[str]:
    n_layers = int(ctx.handle.model.cfg.n_layers)
    names = dla_hooks(n_layers)
    if options.mlp_layers and not getattr(ctx.handle.model.cfg, "attn_only", False):
        names.update(hooks.hook_names("mlp_out", n_layers))
    return names


def count_units(ctx: AnalysisContext, options: Options) -> int:
    return 3


def check_options(ctx: AnalysisContext, options: Options) -> tuple[list, list, str, str]:
    """The heads, MLP layers, position name and preset text; AnalysisError for bad input, before any work."""
    info = ctx.handle.model.cfg
    n_layers, n_heads = int(info.n_layers), int(info.n_heads)
    heads = parse_heads(options.heads, n_layers, n_heads)
    layers = parse_layers(options.mlp_layers, n_layers)
    if layers and getattr(ctx.handle.model.cfg, "attn_only", False):
        raise AnalysisError("This model has no MLP layers to ablate.", "Leave mlp_layers empty.")
    _mask, role = position_mask(ctx.batch, options.positions)
    if options.method == "reference" and not options.reference:
        raise AnalysisError("The method reference needs a reference set.",
                            "Give a pairs file in the option reference (--reference FILE), or use method mean.")
    preset = ""
    if not heads and not layers:
        if options.heads.strip() or options.mlp_layers.strip():
            raise AnalysisError("The set of heads to ablate is empty.", "Give heads like 9.9,9.6.")
        preset = PRESET
    return heads, layers, role, preset


def run(ctx: AnalysisContext, options: Options, progress: Progress) -> Result:
    import torch

    from ioi_desktop.core.analyses.metrics import as_float32, logit_diff_at_end, prompt_labels
    from ioi_desktop.core.devices import model_device

    heads, layers, role, preset = check_options(ctx, options)
    model, batch = ctx.handle.model, ctx.batch
    n_layers = int(ctx.handle.model.cfg.n_layers)
    progress.set_total(3)
    ctx.runs.require("clean", hooks_needed(ctx, options))
    if options.method == "resample" and not options.reference:
        ctx.runs.require("corrupt", hooks_needed(ctx, options))
    with torch.no_grad():
        if preset:
            heads = [strongest_dla_head(ctx)]
        before = dla_by_head(model, ctx.runs.cache("clean"), batch, n_layers)
        clean = logit_diff_at_end(ctx.runs.logits("clean"), batch).float()
        progress.advance(1, "DLA before the ablation")
        progress.check_cancelled()

        mask_np, role = position_mask(batch, options.positions)
        ablated_names = {hooks.hook_name("z", l) for l, _h in heads} | {hooks.hook_name("mlp_out", l) for l in layers}
        source = reference_runs(ctx, options, role, ablated_names)
        device = model_device(model)
        mask = torch.as_tensor(mask_np, device=device)
        fwd_hooks = []
        by_layer: dict[int, list[int]] = {}
        for layer, head in heads:
            by_layer.setdefault(layer, []).append(head)
        for layer, head_list in by_layer.items():
            name = hooks.hook_name("z", layer)
            fwd_hooks.append((name, _replace_hook(replacements(ctx, options, name, role, source), mask, head_list)))
        for layer in layers:
            name = hooks.hook_name("mlp_out", layer)
            fwd_hooks.append((name, _replace_hook(replacements(ctx, options, name, role, source), mask, None)))
        tokens = torch.as_tensor(np.asarray(batch.clean_tokens, dtype=np.int64), device=device)
        size = ctx.batch_size or tokens.shape[0]
        logits_parts, caches = [], []
        names = sorted(dla_hooks(n_layers))
        for start in range(0, tokens.shape[0], size):
            progress.check_cancelled()
            part = slice(start, start + size)
            with model.hooks(fwd_hooks=[(n, _rows(fn, part)) for n, fn in fwd_hooks]):
                logits, cache = model.run_with_cache(tokens[part], names_filter=names)
            logits_parts.append(logits)
            caches.append(cache)
        logits = torch.cat(logits_parts)
        cache = _join_caches(model, caches)
        progress.advance(1, "ablated forward pass")
        after = dla_by_head(model, cache, batch, n_layers)
        ablated = logit_diff_at_end(logits, batch).float()
        before_mean = before.mean(dim=0)
        predicted = sum((before_mean[l, h] for l, h in heads), torch.zeros((), device=before_mean.device))
        progress.advance(1, "DLA after the ablation")
    return Result(
        ablation_logit_diff=as_float32(ablated),
        ablation_logit_diff_clean=as_float32(clean),
        ablation_dla_head_before=as_float32(before_mean),
        ablation_dla_head_after=as_float32(after.mean(dim=0)),
        ablation_dla_head_change=as_float32(after.mean(dim=0) - before_mean),
        ablation_predicted_drop=np.array(float(predicted), dtype=np.float32),
        prompt_labels=prompt_labels(batch),
        heads=[[int(l), int(h)] for l, h in heads],
        mlp_layers=[int(l) for l in layers],
        method=options.method,
        ablated_positions=role,
        reference=options.reference or None,
        preset=preset or None,
        mean_clean=float(clean.mean()),
        mean_ablated=float(ablated.mean()),
        actual_drop=float(clean.mean() - ablated.mean()),
        ln="final LayerNorm applied with each run's own cached scale (apply_ln_to_stack), as in dla",
    )


def _replace_hook(values, mask, head_list):
    """A hook replacing the activation by ``values`` where ``mask`` [prompt, pos] is True
    (only at ``head_list`` for head activations [prompt, pos, head, d_head])."""
    import torch

    def hook(activation, hook, rows=slice(None)):
        new = activation.clone()
        full = values if values.dim() == 0 else values[rows] if values.shape[0] == mask.shape[0] else values
        full = torch.broadcast_to(full.to(new.dtype).to(new.device), new.shape)
        where = mask[rows][: new.shape[0], : new.shape[1]].to(new.device)
        if head_list is None:
            new[where] = full[where]
        else:
            for head in head_list:
                new[:, :, head][where] = full[:, :, head][where]
        return new

    return hook


def _rows(fn, part):
    return lambda activation, hook: fn(activation, hook, rows=part)


def _join_caches(model, caches):
    import torch
    from transformer_lens import ActivationCache

    if len(caches) == 1:
        return caches[0]
    keys = list(caches[0].keys())
    return ActivationCache({k: torch.cat([c[k] for c in caches]) for k in keys}, model)
