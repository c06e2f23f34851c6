"""Exact activation patching, clean into corrupted, as in the Exploratory Analysis Demo.

Activation patching runs the model on the corrupted prompts while replacing
one activation (a layer's residual stream at one position, one head's output,
...) with its value from the clean run, and measures how much of the clean
behaviour comes back. The metric is the logit difference
``logit(correct) - logit(incorrect)`` at each prompt's END position, averaged
over the set, normalized as in the demo:

    score = (patched - corrupted) / (clean - corrupted)

so 0 means no effect and 1 means fully restored. Sweeps (array names):

- ``patch_resid_pre``, ``patch_attn_out``, ``patch_mlp_out`` [layer, pos];
- ``patch_head_z``, ``patch_head_pattern``, ``patch_head_q`` [layer, head]
  (the head's activation at every position);
- ``patch_head_v``, ``patch_head_k`` [layer, kv_head]: per key-value head.
  With grouped- or multi-query attention (Llama, Mistral, Qwen, Gemma,
  Falcon, ...) several query heads share one key-value head, so the k and v
  grids have ``n_key_value_heads`` columns (``kv_head_labels`` say which query
  heads share each); without it they equal the query heads;
- ``patch_head_z_by_pos`` [layer, pos, head].

Each also comes as ``<name>_raw``: the patched mean logit difference before
normalization. Results equal ``transformer_lens.patching.get_act_patch_*``
(tests check it) but come from ``core.engine``, which recomputes only what a
patch can change instead of one full forward per cell.

Positions: for sets whose prompts all have the same length the ``pos`` axis is
the token positions (labelled with prompt 0's tokens). Otherwise prompts are
aligned by named role (IO, S1, S2, END, ...): the ``pos`` axis lists the roles
and each prompt is patched at its own position for that role.

Hybrid models (attention in some layers, a recurrent, convolution or
linear-attention mixer in the others): every grid has the attention layers
only (the head grids have nothing else, so the position grids follow them to
share the ``layer`` axis), ``layer_labels`` naming each row's real layer index
and ``attention_layers`` listing them (None when every layer has attention).

Options: ``sweeps`` (short names from ``SWEEPS``, default all), ``batch_size``
(sequences per pass; None sizes it to free memory, halving on out-of-memory),
``engine`` ("auto", "fast" or "bridge").
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from jaxtyping import Float32

from ioi_desktop.core.analyses.base import AnalysisContext, AnalysisOptions, AnalysisResult, Positions, Progress, array, labels, meta, option
from ioi_desktop.core.errors import AnalysisError

NAME = "patching"


@dataclass(frozen=True)
class Sweep:
    """One patching grid: which activation, over which axes, and what the app calls it.

    The one catalogue of grids: exact patching, attribution patching, the
    options and the panels all read it.
    """

    array: str
    kind: str  # hook kind in core.hooks
    axes: tuple[str, ...]
    title: str

    @property
    def grid_kind(self) -> str:
        """``"layer_pos"``, ``"layer_head"`` or ``"layer_pos_head"``."""
        return "_".join(self.axes)


SWEEPS: dict[str, Sweep] = {
    "resid_pre": Sweep("patch_resid_pre", "resid_pre", ("layer", "pos"), "Residual stream (layer × position)"),
    "attn_out": Sweep("patch_attn_out", "attn_out", ("layer", "pos"), "Attention layer output (layer × position)"),
    "mlp_out": Sweep("patch_mlp_out", "mlp_out", ("layer", "pos"), "MLP layer output (layer × position)"),
    "head_z": Sweep("patch_head_z", "z", ("layer", "head"), "Head output z (layer × head)"),
    "head_v": Sweep("patch_head_v", "v", ("layer", "kv_head"), "Head values v (layer × key-value head)"),
    "head_pattern": Sweep("patch_head_pattern", "pattern", ("layer", "head"), "Head attention pattern (layer × head)"),
    "head_q": Sweep("patch_head_q", "q", ("layer", "head"), "Head queries q (layer × head)"),
    "head_k": Sweep("patch_head_k", "k", ("layer", "kv_head"), "Head keys k (layer × key-value head)"),
    "head_z_by_pos": Sweep("patch_head_z_by_pos", "z", ("layer", "pos", "head"),
                           "Head output z by position (layer × position × head)"),
}

NORMALIZATION = (
    "(patched - corrupted) / (clean - corrupted), on the logit difference at each prompt's END "
    "position averaged over the prompt set; *_raw arrays hold the patched mean logit difference"
)
ENGINES = ("auto", "fast", "bridge")


class Options(AnalysisOptions, analysis=NAME):
    sweeps: tuple[str, ...] = option(tuple(SWEEPS), "The grids to patch", choices=tuple(SWEEPS))
    engine: str = option("auto", "Patching engine: auto (fast plain-torch where it is exact, else bridge blocks), "
                         "fast or bridge", choices=ENGINES)


class Result(AnalysisResult, analysis=NAME, title="Activation patching"):
    patch_resid_pre: Float32[np.ndarray, "layer pos"] | None = array("residual stream before each layer, per position")
    patch_resid_pre_raw: Float32[np.ndarray, "layer pos"] | None = array("the same, patched mean logit difference")
    patch_attn_out: Float32[np.ndarray, "layer pos"] | None = array("attention layer output, per position")
    patch_attn_out_raw: Float32[np.ndarray, "layer pos"] | None = array("the same, patched mean logit difference")
    patch_mlp_out: Float32[np.ndarray, "layer pos"] | None = array("MLP layer output, per position")
    patch_mlp_out_raw: Float32[np.ndarray, "layer pos"] | None = array("the same, patched mean logit difference")
    patch_head_z: Float32[np.ndarray, "layer head"] | None = array("each head's output z at every position")
    patch_head_z_raw: Float32[np.ndarray, "layer head"] | None = array("the same, patched mean logit difference")
    patch_head_v: Float32[np.ndarray, "layer kv_head"] | None = array("each head's values v")
    patch_head_v_raw: Float32[np.ndarray, "layer kv_head"] | None = array("the same, patched mean logit difference")
    patch_head_pattern: Float32[np.ndarray, "layer head"] | None = array("each head's attention pattern")
    patch_head_pattern_raw: Float32[np.ndarray, "layer head"] | None = array("the same, patched mean logit difference")
    patch_head_q: Float32[np.ndarray, "layer head"] | None = array("each head's queries q")
    patch_head_q_raw: Float32[np.ndarray, "layer head"] | None = array("the same, patched mean logit difference")
    patch_head_k: Float32[np.ndarray, "layer kv_head"] | None = array("each head's keys k")
    patch_head_k_raw: Float32[np.ndarray, "layer kv_head"] | None = array("the same, patched mean logit difference")
    patch_head_z_by_pos: Float32[np.ndarray, "layer pos head"] | None = array("each head's z at one position")
    patch_head_z_by_pos_raw: Float32[np.ndarray, "layer pos head"] | None = array(
        "the same, patched mean logit difference")
    pos_labels: Positions | None = labels("pos", "positions (equal-length sets) or named roles")
    kv_head_labels: tuple[str, ...] | None = labels(
        "kv_head", "key-value heads and the query heads that share each, e.g. 'KV0 (H0-H1)'")
    layer_labels: tuple[str, ...] | None = labels(
        "layer", "hybrids: the real layer index of each row (their attention layers only); None: every layer")
    attention_layers: list | None = meta("hybrids: the layers with attention, one per row; None: every layer")
    engine: str | None = meta("the engine that computed the grids (fast, bridge)")
    refused: dict | None = meta("grids that were not patched, each with the reason in one sentence")
    engine_reason: str | None = meta("why that engine was chosen")
    normalization: str | None = meta("how scores are normalized")
    clean_logit_diff: float | None = meta("clean mean logit difference")
    corrupt_logit_diff: float | None = meta("corrupted mean logit difference")
    position_alignment: str | None = meta("'absolute' positions or named 'roles'")
    sweeps: list | None = meta("the sweeps computed")
    seconds: dict | None = meta("seconds per sweep")
    settings_per_pass: int | None = meta("patch settings per batched forward")


def sweep_names(options: Options) -> list[str]:
    return list(options.sweeps)


def hooks_needed(ctx: AnalysisContext, options: Options) -> set[str]:
    """Hooks both cached runs must hold: the patched activations plus what the engines restart from."""
    from ioi_desktop.core.engine.inputs import hooks_for_kinds

    kinds = {SWEEPS[name].kind for name in options.sweeps}
    model = ctx.handle.model
    return recorded(model, hooks_for_kinds(kinds, int(model.cfg.n_layers)))


def recorded(model, names: set[str]) -> set[str]:
    """``names`` less those a hybrid does not record (its mixer layers have no heads, and may lack more)."""
    if len(attention_layers(model)) < int(model.cfg.n_layers):
        return {name for name in names if name in model.hook_dict}
    return names


def count_units(ctx: AnalysisContext, options: Options) -> int:
    """Progress units ``run`` reports: one per layer (a hybrid's attention layers) of each sweep."""
    return len(options.sweeps) * len(attention_layers(ctx.handle.model))


def attention_layers(model) -> list[int]:
    """The grids' rows: every layer, or a hybrid's attention layers only (``hooks.attention_layers``)."""
    from ioi_desktop.core.hooks import attention_layers as with_heads

    return with_heads(model)


def position_axis(batch) -> tuple[np.ndarray, Positions, str]:
    """Where each ``pos`` entry is in each prompt: ``(positions [entry, prompt], labels, alignment)``.

    Equal-length sets use absolute positions labelled with prompt 0's tokens;
    other sets use the named roles, -1 where a prompt lacks the role.
    """
    n_prompts = len(batch.end_pos)
    if batch.equal_length:
        n_pos = batch.clean_tokens.shape[1]
        positions = np.repeat(np.arange(n_pos)[:, None], n_prompts, axis=1)
        tokens = tuple(batch.str_tokens[0][:n_pos])
        return positions, Positions(tuple(range(n_pos)), tokens, (None,) * n_pos), "absolute"
    roles = [(name, np.asarray(pos)) for name, pos in batch.roles.items() if (np.asarray(pos) >= 0).any()]
    positions = np.stack([pos for _name, pos in roles]).astype(np.int64)
    names = tuple(name for name, _pos in roles)
    return positions, Positions((None,) * len(names), (None,) * len(names), names), "roles"


def normalization_span(clean_mean: float, corrupt_mean: float, what: str) -> float:
    """clean - corrupted mean logit difference, the denominator of normalized scores; refused when 0 or not finite."""
    span = clean_mean - corrupt_mean
    if not np.isfinite(span) or span == 0.0:
        raise AnalysisError(
            f"The clean and corrupted prompts give the same mean logit difference, so {what} "
            "scores cannot be normalized.",
            "Check that the corrupted prompts differ from the clean ones in a way the model notices.",
        )
    return span


def logit_diff_at_end(logits, batch_tensors) -> "torch.Tensor":
    """Per-prompt ``logit[correct] - logit[incorrect]`` at each prompt's END: [prompt]."""
    import torch

    end_pos, correct, incorrect = batch_tensors
    rows = torch.arange(end_pos.shape[0], device=logits.device)
    at_end = logits[rows, end_pos]
    return at_end[rows, correct] - at_end[rows, incorrect]


def build_inputs(model, batch, runs, kinds) -> tuple["PatchInputs", "torch.Tensor"]:
    """``PatchInputs`` from the shared cached runs (fetching the hooks the engines read),
    and the clean run's per-prompt logit difference."""
    import torch

    from ioi_desktop.core.engine import PatchInputs, hooks_for_kinds

    names = recorded(model, hooks_for_kinds(kinds, int(model.cfg.n_layers)))
    runs.require("clean", names)
    runs.require("corrupt", names)
    clean_logits, corrupt_logits = runs.logits("clean"), runs.logits("corrupt")
    device = corrupt_logits.device
    to_long = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.long, device=device)
    targets = (to_long(batch.end_pos), to_long(batch.correct_ids), to_long(batch.incorrect_ids))
    clean_cache, corrupt_cache = runs.cache("clean"), runs.cache("corrupt")
    inputs = PatchInputs(
        clean=lambda name: clean_cache[name],
        corrupt=lambda name: corrupt_cache[name],
        corrupt_tokens=to_long(batch.corrupt_tokens),
        end_pos=targets[0],
        correct_ids=targets[1],
        incorrect_ids=targets[2],
        corrupt_logit_diff=logit_diff_at_end(corrupt_logits, targets).float(),
    )
    return inputs, logit_diff_at_end(clean_logits, targets).float()


def settings_masks(sweep: Sweep, positions, n_pos: int, n_heads: int, device) -> "torch.Tensor":
    """Boolean masks of every patch setting of one layer of ``sweep`` (see ``engine.inputs``).

    Settings are ordered as the grid row: pos entries, heads, or (pos, head) row-major.
    """
    import torch

    positions = torch.as_tensor(positions, dtype=torch.long, device=device)  # [entry, prompt]
    n_entries, n_prompts = positions.shape
    prompt = torch.arange(n_prompts, device=device)
    present = positions >= 0
    at = positions.clamp(min=0)
    if sweep.axes == ("layer", "pos"):
        masks = torch.zeros(n_entries, n_prompts, n_pos, dtype=torch.bool, device=device)
        entry = torch.arange(n_entries, device=device)[:, None].expand(-1, n_prompts)
        masks[entry, prompt.expand(n_entries, -1), at] = present
        return masks
    if sweep.axes in (("layer", "head"), ("layer", "kv_head")):
        masks = torch.zeros(n_heads, n_prompts, n_pos, n_heads, dtype=torch.bool, device=device)
        heads = torch.arange(n_heads, device=device)
        masks[heads, :, :, heads] = True
        return masks
    masks = torch.zeros(n_entries, n_heads, n_prompts, n_pos, n_heads, dtype=torch.bool, device=device)
    entry = torch.arange(n_entries, device=device)[:, None, None]
    head = torch.arange(n_heads, device=device)[None, :, None]
    masks[entry, head, prompt[None, None, :], at[:, None, :], head] = present[:, None, :]
    return masks.view(n_entries * n_heads, n_prompts, n_pos, n_heads)


def head_count(activation, kind: str) -> int:
    """Heads in a cached activation: [prompt, head, q, k] for patterns, [..., head, d_head] otherwise."""
    if kind == "pattern":
        return int(activation.shape[1])
    return int(activation.shape[-2]) if activation.dim() == 4 else 0


def kv_head_labels(n_heads: int, n_kv_heads: int) -> tuple[str, ...]:
    """'KV0 (H0-H1)', ...: which query heads share each key-value head (one each without GQA)."""
    if n_kv_heads <= 0:
        return ()
    group = max(1, n_heads // n_kv_heads)
    if group == 1:
        return tuple(f"KV{i} (H{i})" for i in range(n_kv_heads))
    return tuple(f"KV{i} (H{i * group}-H{(i + 1) * group - 1})" for i in range(n_kv_heads))


def _architecture(ctx: AnalysisContext) -> str:
    """The loaded model's architecture name (from the model's config where the handle has no info)."""
    info = getattr(ctx.handle, "info", None)
    cfg = ctx.handle.model.cfg
    return (getattr(info, "architecture", None) or getattr(cfg, "architecture", None)
            or getattr(cfg, "original_architecture", None) or "this model")


def unrecorded_sweeps(ctx: AnalysisContext, names: list[str]) -> dict[str, str]:
    """A hybrid's sweeps whose hook TransformerLens does not record at every attention layer, with the
    reason (empty for a model with attention in every layer)."""
    from ioi_desktop.core.hooks import hook_name

    model = ctx.handle.model
    layers = attention_layers(model)
    refused: dict[str, str] = {}
    if len(layers) < int(model.cfg.n_layers):
        for name in names:
            missing = [layer for layer in layers if hook_name(SWEEPS[name].kind, layer) not in model.hook_dict]
            if missing:
                refused[name] = (f"The {name} grid is not available for {_architecture(ctx)}: TransformerLens "
                                 f"records no {hook_name(SWEEPS[name].kind, missing[0])}.")
    return refused


def refused_sweeps(ctx: AnalysisContext, names: list[str], inputs) -> dict[str, str]:
    """Sweeps this model cannot patch (TransformerLens discards edits to their hook, or a hybrid does not
    record it at its attention layers), with the reason."""
    from ioi_desktop.core.engine.edits import discarded_edit_sentence, edit_reaches_output

    refused = unrecorded_sweeps(ctx, names)
    names = [name for name in names if name not in refused]
    longest = int(inputs.end_pos.argmax())
    tokens = inputs.corrupt_tokens[longest : longest + 1, : int(inputs.end_pos[longest]) + 1]
    for kind in sorted({SWEEPS[n].kind for n in names if SWEEPS[n].kind == "pattern"}):
        if not edit_reaches_output(ctx.handle.model, tokens, kind):
            for name in names:
                if SWEEPS[name].kind == kind:
                    refused[name] = discarded_edit_sentence(_architecture(ctx), kind, name)
    return refused


def sweep_layer(engine, sweep: Sweep, layer: int, masks, chunk: int) -> tuple["torch.Tensor", int]:
    """Patched mean logit difference of every setting of one layer, and the chunk size that fit."""
    from ioi_desktop.core.engine.batching import map_chunks

    per_prompt, chunk = map_chunks(
        lambda part: engine.patched_logit_diffs(sweep.kind, layer, masks[part]), masks.shape[0], chunk
    )
    return per_prompt.mean(dim=1), chunk


def run(ctx: AnalysisContext, options: Options, progress: Progress) -> Result:
    """Run the selected sweeps, streaming each grid row (one layer) as it finishes."""
    import torch

    from ioi_desktop.core.engine import select_engine
    from ioi_desktop.core.engine.batching import bytes_per_row, settings_per_chunk
    from ioi_desktop.core.hooks import hook_name

    names = sweep_names(options)
    model, batch = ctx.handle.model, ctx.batch
    cfg = model.cfg
    layers = attention_layers(model)  # the rows: every layer, or a hybrid's attention layers
    n_layers = len(layers)
    hybrid = n_layers < int(cfg.n_layers)
    progress.set_total(len(names) * n_layers)
    inputs, clean_per_prompt = build_inputs(model, batch, ctx.runs, {SWEEPS[n].kind for n in names})
    clean_mean = float(clean_per_prompt.mean())
    corrupt_mean = float(inputs.corrupt_logit_diff.mean())
    span = normalization_span(clean_mean, corrupt_mean, "patching")
    refused = refused_sweeps(ctx, names, inputs)
    names = [name for name in names if name not in refused]
    if not names:
        raise AnalysisError(" ".join(refused.values()), "Choose other grids (head_z, head_v, head_q, ...).")
    engine, reason = select_engine(model, inputs, options.engine)
    positions, pos_labels, alignment = position_axis(batch)
    n_pos, n_prompts = inputs.n_pos, inputs.n_prompts
    device = inputs.corrupt_logit_diff.device
    batch_size = ctx.batch_size
    row_bytes = bytes_per_row(n_pos, int(cfg.d_model), int(getattr(cfg, "d_mlp", 4 * cfg.d_model)), int(cfg.n_heads))
    from ioi_desktop.core.devices import model_devices  # every GPU of a split model: the tightest one counts

    chunk = settings_per_chunk(None if batch_size is None else int(batch_size), n_prompts, row_bytes,
                               model_devices(model) or [device])

    arrays: dict[str, np.ndarray] = {}
    axes: dict[str, tuple[str, ...]] = {}
    seconds: dict[str, float] = {}
    kv_labels = None
    for name in names:
        sweep = SWEEPS[name]
        n_heads = head_count(inputs.clean(hook_name(sweep.kind, layers[0])), sweep.kind)
        if "kv_head" in sweep.axes:
            kv_labels = kv_head_labels(int(cfg.n_heads), n_heads)
        masks = settings_masks(sweep, positions, n_pos, n_heads, device)
        grid_shape = {"pos": positions.shape[0], "head": n_heads, "kv_head": n_heads}
        row_shape = tuple(grid_shape[a] for a in sweep.axes[1:])
        raw = np.zeros((n_layers, *row_shape), dtype=np.float32)
        began = time.perf_counter()
        for row, layer in enumerate(layers):
            progress.check_cancelled()
            values, chunk = sweep_layer(engine, sweep, layer, masks, chunk)
            raw[row] = values.view(row_shape).to(torch.float32).cpu().numpy()
            progress.rows(sweep.array, row, ((raw[row] - corrupt_mean) / span).astype(np.float32), raw.shape)
            progress.advance(1, f"patching {name}: layer {row + 1}/{n_layers}")
        seconds[name] = time.perf_counter() - began
        arrays[sweep.array] = np.ascontiguousarray((raw - corrupt_mean) / span, dtype=np.float32)
        arrays[sweep.array + "_raw"] = raw
        axes[sweep.array] = axes[sweep.array + "_raw"] = sweep.axes

    return Result(
        **arrays,
        pos_labels=pos_labels if any("pos" in a for a in axes.values()) else None,
        kv_head_labels=kv_labels,
        layer_labels=tuple(str(layer) for layer in layers) if hybrid else None,
        attention_layers=list(layers) if hybrid else None,
        refused=refused or None,
        engine=engine.name,
        engine_reason=reason,
        normalization=NORMALIZATION,
        clean_logit_diff=clean_mean,
        corrupt_logit_diff=corrupt_mean,
        position_alignment=alignment,
        sweeps=names,
        seconds=seconds,
        settings_per_pass=chunk,
    )
