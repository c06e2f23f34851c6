"""Direct path patching (Wang et al. 2022): which heads feed which heads' queries, keys, values.

The path from a set of sender heads to one receiver input is patched as
TransformerLens's ``transformer_lens.patching.get_act_patch_direct_path``
does: on the corrupted run, the senders' clean-minus-corrupted write
``(z_clean - z_corrupt)[:, :, h] @ W_O[h]`` (summed over the senders, at every
position) is added to the residual stream that *only the receiver's* q, k or v
input reads (its own pre-``ln1`` copy, LayerNorm recomputed); every other reader
sees the corrupted run, and everything after the receiver runs as usual.

- ``path_patch_q`` / ``path_patch_k`` / ``path_patch_v`` [layer, head]: the
  receiver grid, one cell per receiver head, for the sender set (forward
  question). With ``receiver_head`` set (reverse question, "which heads feed
  this head"), the same names hold one cell per *sender* head, each sender
  alone into that one receiver.
- Grouped- and multi-query attention (``n_key_value_heads < n_heads``): a
  query head has no k or v of its own, so the k and v receivers are the
  key-value heads. The forward question's k/v grids are then
  ``path_patch_k_kv`` / ``path_patch_v_kv`` [layer, kv_head] (``kv_head_labels``
  say which query heads share each, e.g. 'KV0 (H0-H1)'; query head ``h`` reads
  key-value head ``h // (n_heads / n_key_value_heads)``, TransformerLens's
  ``repeat_interleave``): the senders' write reaches only that key-value head's
  k (or v) input, so every query head of its group sees the patched key (value)
  and nothing else changes. The q grids stay per query head. The reverse
  question's k/v grids patch the receiver's key-value head
  (``receiver_kv_head``, shared by its group). With one key-value head per query
  head this is exactly the per-head definition above.
- ``path_patch_logits`` [layer, head]: each head alone as sender, its path
  straight to the logits (the final LayerNorm's input gets the write, the
  LayerNorm is recomputed); the sender set's joint value is in the metadata.

Scores are normalized like the other patching grids, ``(patched - corrupted) /
(clean - corrupted)`` of the mean logit difference at END; ``*_raw`` arrays
hold the patched mean logit difference. Cells where no sender precedes the
receiver change nothing and hold the corrupted value (score 0).

Exact and batched: a receiver's new q/k/v is computed from the cached
corrupted residual stream with the layer's own ``ln1`` and weights (checked
once against the cached run), and the patching engine (``core.engine``) runs
only what that changes, many receivers or senders per pass. A head's write is
``z @ W_O`` only where the block adds the head sum to the residual stream as it
is; that is checked on the cached runs too (the heads' summed writes give the
change of ``hook_attn_out``, which is the change of the residual stream across
the attention, or with the MLP's across a parallel block), so blocks that
normalize or scale the attention output first (Gemma 2/3's post-attention
norms, for one) are refused, as ``get_act_patch_direct_path`` refuses them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from jaxtyping import Float32

from ioi_desktop.core import hooks
from ioi_desktop.core.analyses.base import AnalysisContext, AnalysisOptions, AnalysisResult, Progress, array, labels, meta, option
from ioi_desktop.core.errors import AnalysisError

NAME = "path_patching"
RECEIVERS = ("q", "k", "v", "logits")
PRESET_INTO = "Paths into the strongest DLA head"
PRESET_FROM = "Paths from the strongest DLA head"


class Options(AnalysisOptions, analysis=NAME):
    senders: str = option("", "Sender heads as LAYER.HEAD, comma-separated (e.g. 7.3,7.9); empty (and no "
                          "receiver_head): every earlier head into the head with the largest positive DLA at END")
    receivers: tuple[str, ...] = option(RECEIVERS, "Receiver inputs: every later head's q, k or v, and "
                                        "each head's direct path to the logits", choices=RECEIVERS)
    receiver_head: str = option("", "Reverse question: one receiver head LAYER.HEAD, every earlier head as sender; "
                                "empty: the forward question from the senders")
    engine: str = option("auto", "Patching engine: auto (fast plain-torch where it is exact, else bridge blocks), "
                         "fast or bridge", choices=("auto", "fast", "bridge"))


class Result(AnalysisResult, analysis=NAME, title="Path patching"):
    path_patch_q: Float32[np.ndarray, "layer head"] | None = array(
        "senders -> each receiver head's query input (reverse question: each sender -> the receiver's query)")
    path_patch_q_raw: Float32[np.ndarray, "layer head"] | None = array("the same, patched mean logit difference")
    path_patch_k: Float32[np.ndarray, "layer head"] | None = array("the same into key inputs")
    path_patch_k_raw: Float32[np.ndarray, "layer head"] | None = array("the same, patched mean logit difference")
    path_patch_v: Float32[np.ndarray, "layer head"] | None = array("the same into value inputs")
    path_patch_v_raw: Float32[np.ndarray, "layer head"] | None = array("the same, patched mean logit difference")
    path_patch_k_kv: Float32[np.ndarray, "layer kv_head"] | None = array(
        "grouped-/multi-query attention, forward question: senders -> each key-value head's key input")
    path_patch_k_kv_raw: Float32[np.ndarray, "layer kv_head"] | None = array("the same, patched mean logit difference")
    path_patch_v_kv: Float32[np.ndarray, "layer kv_head"] | None = array("the same into value inputs")
    path_patch_v_kv_raw: Float32[np.ndarray, "layer kv_head"] | None = array("the same, patched mean logit difference")
    path_patch_logits: Float32[np.ndarray, "layer head"] | None = array(
        "each head alone as sender, its direct path to the logits")
    path_patch_logits_raw: Float32[np.ndarray, "layer head"] | None = array("the same, patched mean logit difference")
    prompt_labels: tuple[str, ...] | None = labels("prompt", "each prompt's text without BOS")
    kv_head_labels: tuple[str, ...] | None = labels(
        "kv_head", "key-value heads and the query heads that share each, e.g. 'KV0 (H0-H1)'")
    question: str | None = meta("'forward' (grids over receivers) or 'reverse' (grids over senders)")
    senders: list | None = meta("the sender heads as [layer, head] pairs (forward question)")
    receiver_head: list | None = meta("the receiver head [layer, head] (reverse question)")
    receiver_kv_head: list | None = meta(
        "grouped-/multi-query attention, reverse question: the key-value head [layer, kv_head] the k/v grids patch")
    n_key_value_heads: int | None = meta("key-value heads per layer (n_heads without grouped-query attention)")
    receivers: list | None = meta("the receiver inputs computed")
    preset: str | None = meta("where the senders came from, if the senders option was empty")
    senders_to_logits_raw: float | None = meta("the sender set's joint direct path to the logits, patched mean")
    senders_to_logits: float | None = meta("the same, normalized")
    normalization: str | None = meta("how scores are normalized")
    clean_logit_diff: float | None = meta("clean mean logit difference")
    corrupt_logit_diff: float | None = meta("corrupted mean logit difference")
    engine: str | None = meta("the patching engine that ran the receivers (fast, bridge)")
    engine_reason: str | None = meta("why that engine was chosen")
    note: str | None = meta("why grids were left out, if the default run could not compute them")


# What the check that each head writes z @ W_O into the residual stream reads (``check_head_writes``).
WRITE_CHECK_KINDS = ("attn_out", "mlp_out", "resid_pre", "resid_mid", "resid_post")

NORMALIZATION = (
    "(patched - corrupted) / (clean - corrupted), on the logit difference at each prompt's END averaged over "
    "the prompt set; *_raw arrays hold the patched mean logit difference"
)


def hooks_needed(ctx: AnalysisContext, options: Options) -> set[str]:
    from ioi_desktop.core.engine.inputs import hooks_for_kinds

    n_layers = int(ctx.handle.model.cfg.n_layers)
    names = {hooks.LN_FINAL_SCALE, hooks.resid_final_name(n_layers), *hooks.hook_names("z", n_layers)}
    # What the write check reads, where the model has it (check_head_writes says which it lacks).
    hook_dict = getattr(ctx.handle.model, "hook_dict", None)
    names |= {name for kind in WRITE_CHECK_KINDS for name in hooks.hook_names(kind, n_layers)
              if hook_dict is None or name in hook_dict}
    if any(r != "logits" for r in options.receivers):
        names |= hooks_for_kinds({r for r in options.receivers if r != "logits"}, n_layers)
    return names


def count_units(ctx: AnalysisContext, options: Options) -> int:
    return len(options.receivers) * int(ctx.handle.model.cfg.n_layers)


def check_head_writes(model: Any, clean: Any, corrupt: Any, writes: list, architecture: str) -> None:
    """AnalysisError unless every layer adds its heads' writes ``z @ W_O`` to the residual stream as they are.

    Checked on the cached runs: the heads' summed clean-minus-corrupted writes equal
    the change of ``hook_attn_out``, and in the corrupted run ``hook_attn_out`` is what
    the attention adds to the residual stream (``resid_mid - resid_pre``; in a parallel
    block ``resid_post - resid_pre - mlp_out``).
    """
    import torch

    names = set(clean.keys()) & set(corrupt.keys())
    for layer, write in enumerate(writes):
        name = lambda kind: hooks.hook_name(kind, layer)
        problem = None
        if name("attn_out") not in names or name("resid_pre") not in names:
            problem = "TransformerLens records no hook_attn_out or hook_resid_pre there"
        else:
            attn_out = corrupt[name("attn_out")]
            expected = clean[name("attn_out")] - attn_out
            if name("resid_mid") in names:
                added = corrupt[name("resid_mid")] - corrupt[name("resid_pre")]
            elif name("mlp_out") in names and name("resid_post") in names:
                added = corrupt[name("resid_post")] - corrupt[name("resid_pre")] - corrupt[name("mlp_out")]
            else:
                added = None
            # 1e-4 relative in float32, a few rounding steps in half precision; a norm or scale is O(1).
            tolerance = max(1e-4, 8 * torch.finfo(attn_out.dtype).eps)
            limit = tolerance * max(1.0, float(attn_out.abs().max()), float(expected.abs().max()))
            if added is None:
                problem = "TransformerLens records neither hook_resid_mid nor hook_mlp_out and hook_resid_post there"
            elif float((write.sum(dim=0).to(expected.dtype) - expected).abs().max()) > limit:
                problem = "the heads' writes z @ W_O do not sum to the attention output (it is normalized or scaled first)"
            elif float((added - attn_out).abs().max()) > limit:
                problem = "the attention output is scaled or normalized before it is added to the residual stream"
        if problem:
            raise AnalysisError(
                f"Path patching cannot isolate one head's write on {architecture} (layer {layer}: {problem}).",
                "Use activation patching (head z) instead; path patching needs blocks that add z @ W_O "
                "to the residual stream as it is.")


def head_writes(model: Any, clean: Any, corrupt: Any, layer: int) -> "torch.Tensor":
    """[head, prompt, pos, d_model]: each head's clean-minus-corrupted write ``(z_clean - z_corrupt) @ W_O``."""
    import torch

    name = hooks.hook_name("z", layer)
    diff = clean[name] - corrupt[name]
    W_O = model.blocks[layer].attn.W_O
    return torch.einsum("pshd,hdm->hpsm", diff.to(W_O.dtype), W_O)


class QKVReader:
    """A layer's q, k or v computed from a residual stream (the layer's ``ln1`` and weights).

    Checked once per layer and kind against the corrupted run's cached activation,
    so a model whose attention this does not describe is refused, not mis-patched.
    """

    def __init__(self, model: Any, corrupt: Any) -> None:
        self.model, self.corrupt = model, corrupt
        self.checked: set[tuple[str, int]] = set()
        self.weights: dict[tuple[str, int], tuple] = {}

    def check(self, kind: str) -> None:
        """Check every layer for ``kind`` (AnalysisError if this model's attention is not read this way)."""
        for layer in range(int(self.model.cfg.n_layers)):
            if (kind, layer) not in self.checked:
                self._check(kind, layer)

    def __call__(self, kind: str, layer: int, resid: "torch.Tensor") -> "torch.Tensor":
        """[..., prompt, pos, head, d_head] from resid [..., prompt, pos, d_model]."""
        if (kind, layer) not in self.checked:
            self._check(kind, layer)
        return self._compute(kind, layer, resid)

    def _compute(self, kind: str, layer: int, resid):
        import torch

        from ioi_desktop.core.devices import module_device, to_device

        block = self.model.blocks[layer]
        normed = block.ln1(to_device(resid, module_device(block.ln1)))  # a split model: ln1 on its block's GPU
        W, b = self._weights(kind, layer)
        normed = to_device(normed, W.device)
        return torch.einsum("...m,hmd->...hd", normed.to(W.dtype), W) + b

    def _weights(self, kind: str, layer: int):
        """``W_{Q,K,V}`` [head or kv_head, d_model, d_head] of ``layer`` and its bias (zero where the
        projection has none, as in Llama)."""
        key = (kind, layer)
        if key not in self.weights:
            attn = self.model.blocks[layer].attn
            W = getattr(attn, f"W_{kind.upper()}")
            b = getattr(attn, f"b_{kind.upper()}", None)
            self.weights[key] = (W, W.new_zeros(W.shape[0], W.shape[-1]) if b is None else b.to(W.device))
        return self.weights[key]

    def _check(self, kind: str, layer: int) -> None:
        expected = self.corrupt[hooks.hook_name(kind, layer)]
        try:
            value = self._compute(kind, layer, self.corrupt[hooks.hook_name("resid_pre", layer)])
        except (AttributeError, RuntimeError, IndexError, TypeError, KeyError) as exc:
            value, why = None, f"its blocks have no ln1 and W_{kind.upper()}/b_{kind.upper()} to compute them with ({type(exc).__name__})"
        else:
            why = None
        error = float((value - expected).abs().max()) if value is not None and value.shape == expected.shape else float("inf")
        if not error <= 1e-4 * max(1.0, float(expected.abs().max())):
            raise AnalysisError(
                f"Path patching cannot compute this model's {kind} inputs from the residual stream "
                f"({why or f'layer {layer} differs by {error:.3g}'}).",
                "Path patching supports models whose attention reads q, k and v from ln1 of the residual "
                "stream (the GPT-2 family, for one); use activation patching instead.")
        self.checked.add((kind, layer))


def logits_grid(model, clean, corrupt, batch, n_layers: int, n_heads: int, senders,
                writes=None) -> tuple["torch.Tensor", float]:
    """[layer, head] patched mean logit difference of each head's path to the logits, and the sender set's."""
    import torch

    from ioi_desktop.core.analyses.metrics import answer_ids, at_end, end_index

    final = corrupt[hooks.resid_final_name(n_layers)]
    end = end_index(batch, final.device)
    base = at_end(final, end)  # [prompt, d_model]
    correct, incorrect = answer_ids(batch, final.device)

    def metric(resid_at_end):  # [rows, prompt, d_model] -> [rows, prompt]
        rows, n_prompts = resid_at_end.shape[:2]
        logits = model.unembed(model.ln_final(resid_at_end.reshape(rows * n_prompts, 1, -1)))[:, 0]
        logits = logits.view(rows, n_prompts, -1)
        return logits[:, torch.arange(n_prompts), correct] - logits[:, torch.arange(n_prompts), incorrect]

    grid = torch.zeros(n_layers, n_heads, device=final.device)
    joint = torch.zeros_like(base)
    for layer in range(n_layers):
        write = head_writes(model, clean, corrupt, layer) if writes is None else writes[layer]
        at = write[:, torch.arange(write.shape[1]), end]  # [head, prompt, d_model]
        grid[layer] = metric(base.unsqueeze(0) + at.to(base.dtype)).mean(dim=1).float()
        for l, h in senders:
            if l == layer:
                joint = joint + at[h].to(base.dtype)
    return grid, float(metric((base + joint).unsqueeze(0)).mean())


def run(ctx: AnalysisContext, options: Options, progress: Progress) -> Result:
    import torch

    from ioi_desktop.core.analyses.ablation import parse_heads, strongest_dla_head
    from ioi_desktop.core.analyses.metrics import prompt_labels
    from ioi_desktop.core.analyses.patching import build_inputs, kv_head_labels, normalization_span
    from ioi_desktop.core.engine import select_engine
    from ioi_desktop.core.engine.batching import bytes_per_row, map_chunks, settings_per_chunk

    model, batch = ctx.handle.model, ctx.batch
    info = ctx.handle.model.cfg
    n_layers, n_heads = int(info.n_layers), int(info.n_heads)
    senders = parse_heads(options.senders, n_layers, n_heads, "senders")
    receiver = parse_heads(options.receiver_head, n_layers, n_heads, "receiver_head")
    if len(receiver) > 1:
        raise AnalysisError("The reverse question takes one receiver head, not several.",
                            "Give one head in receiver_head, e.g. 9.9.")
    if options.senders.strip() and not senders:
        raise AnalysisError("The set of sender heads is empty.", "Give senders like 7.3,7.9.")
    if receiver and receiver[0][0] == 0 and any(r != "logits" for r in options.receivers):
        raise AnalysisError(f"The receiver head {receiver[0][0]}.{receiver[0][1]} is in layer 0, which no head "
                            "writes into.", "Choose a receiver head in a later layer.")
    kinds = [r for r in options.receivers if r != "logits"]
    n_kv = int(getattr(info, "n_key_value_heads", None) or n_heads)
    if n_kv <= 0 or n_heads % n_kv:
        raise AnalysisError(
            f"Path patching cannot map {_architecture(ctx)}'s {n_heads} query heads onto its {n_kv} key-value heads.",
            "Choose the receivers q and logits (--set path_patching.receivers=q,logits).")
    grouped = n_kv != n_heads
    progress.set_total(len(options.receivers) * n_layers)
    ctx.runs.require("clean", hooks_needed(ctx, options))
    ctx.runs.require("corrupt", hooks_needed(ctx, options))
    preset = ""
    with torch.no_grad():
        if not senders and not receiver:
            # The IOI paper's question: which heads feed the head that writes the answer (its
            # q, k and v); a layer-0 head has no earlier heads, so then the paths out of it.
            strongest = strongest_dla_head(ctx)
            if strongest[0] > 0:
                receiver, preset = [strongest], PRESET_INTO
            else:
                senders, preset = [strongest], PRESET_FROM
        inputs, clean_per_prompt = build_inputs(model, batch, ctx.runs, set(kinds))
        clean_mean = float(clean_per_prompt.mean())
        corrupt_mean = float(inputs.corrupt_logit_diff.mean())
        span = normalization_span(clean_mean, corrupt_mean, "path patching")
        clean, corrupt = ctx.runs.cache("clean"), ctx.runs.cache("corrupt")
        writes = [head_writes(model, clean, corrupt, layer) for layer in range(n_layers)]
        check_head_writes(model, clean, corrupt, writes, _architecture(ctx))
        arrays: dict[str, np.ndarray] = {}
        engine_name, engine_reason, note = None, None, None
        if kinds:
            engine, engine_reason = select_engine(model, inputs, options.engine)
            engine_name = engine.name
            reader = QKVReader(model, corrupt)
            row_bytes = bytes_per_row(inputs.n_pos, int(model.cfg.d_model),
                                      int(getattr(model.cfg, "d_mlp", 4 * model.cfg.d_model)), n_heads)
            from ioi_desktop.core.devices import model_devices  # a split model: its tightest GPU counts

            chunk = settings_per_chunk(ctx.batch_size, inputs.n_prompts, row_bytes,
                                       model_devices(model) or [inputs.corrupt_logit_diff.device])
            try:
                for kind in kinds:
                    reader.check(kind)
            except AnalysisError as exc:
                # The default run (the preset) must not fail on a model whose attention it cannot
                # read: it leaves the q/k/v grids out and says why; an explicit request is refused.
                if not preset:
                    raise
                note, kinds = f"{exc.message} The q/k/v grids were left out.", []
            for kind in kinds:
                per_kv = grouped and kind in ("k", "v")
                # Forward question: one cell per receiver (a key-value head for k/v under GQA);
                # reverse question: one cell per sender head.
                columns = n_kv if per_kv and not receiver else n_heads
                raw = np.full((n_layers, columns), corrupt_mean, dtype=np.float32)
                name = f"path_patch_{kind}_kv" if per_kv and not receiver else f"path_patch_{kind}"
                if receiver:
                    # The receiver's own q, or the k/v of the key-value head it reads.
                    index = receiver[0][1] // (n_heads // n_kv) if per_kv else receiver[0][1]
                    chunk = _reverse(engine, reader, kind, (receiver[0][0], index), writes, corrupt, raw, chunk,
                                     map_chunks, progress, name, corrupt_mean, span)
                else:
                    chunk = _forward(engine, reader, kind, senders, writes, corrupt, raw, chunk, map_chunks,
                                     progress, name, corrupt_mean, span)
                arrays[name + "_raw"] = raw
                arrays[name] = np.ascontiguousarray((raw - corrupt_mean) / span, dtype=np.float32)
        joint = None
        if "logits" in options.receivers:
            progress.check_cancelled()
            grid, joint = logits_grid(model, clean, corrupt, batch, n_layers, n_heads, senders, writes)
            raw = grid.cpu().numpy().astype(np.float32)
            arrays["path_patch_logits_raw"] = raw
            arrays["path_patch_logits"] = np.ascontiguousarray((raw - corrupt_mean) / span, dtype=np.float32)
            progress.advance(n_layers, "path patching into the logits")
    return Result(
        **arrays,
        prompt_labels=prompt_labels(batch),
        question="reverse" if receiver else "forward",
        senders=None if receiver else [[int(l), int(h)] for l, h in senders],
        receiver_head=[int(v) for v in receiver[0]] if receiver else None,
        receiver_kv_head=([int(receiver[0][0]), int(receiver[0][1]) // (n_heads // n_kv)]
                          if receiver and grouped and any(k in ("k", "v") for k in kinds) else None),
        n_key_value_heads=n_kv,
        kv_head_labels=kv_head_labels(n_heads, n_kv) if grouped else None,
        receivers=list(options.receivers),
        preset=preset or None,
        senders_to_logits_raw=None if receiver or joint is None else joint,
        senders_to_logits=None if receiver or joint is None else (joint - corrupt_mean) / span,
        normalization=NORMALIZATION,
        clean_logit_diff=clean_mean,
        corrupt_logit_diff=corrupt_mean,
        engine=engine_name,
        engine_reason=engine_reason,
        note=note,
    )


def _architecture(ctx: AnalysisContext) -> str:
    info = getattr(ctx.handle, "info", None)
    return str(getattr(info, "architecture", None) or "this model")


def _forward(engine, reader, kind, senders, writes, corrupt, raw, chunk, map_chunks, progress, name, base, span):
    """Fill ``raw`` [layer, head] (or [layer, kv_head] for k/v under GQA): the sender set into each
    receiver's ``kind`` input."""
    import torch

    n_layers, n_heads = raw.shape
    for layer in range(n_layers):
        progress.check_cancelled()
        earlier = [(l, h) for l, h in senders if l < layer]
        if earlier:
            delta = sum(writes[l][h] for l, h in earlier)
            resid = corrupt[hooks.hook_name("resid_pre", layer)]
            patched = reader(kind, layer, resid + delta.to(resid.dtype))  # [prompt, pos, head, d_head]
            current = corrupt[hooks.hook_name(kind, layer)]
            heads = torch.arange(n_heads, device=current.device)

            def settings(part, patched=patched, current=current, heads=heads, layer=layer):
                new = current.unsqueeze(0).repeat(part.stop - part.start, 1, 1, 1, 1)
                rows = torch.arange(new.shape[0], device=new.device)
                new[rows, :, :, heads[part]] = patched[:, :, heads[part]].permute(2, 0, 1, 3).to(new.dtype)
                return engine.logit_diffs_of(kind, layer, new)

            values, chunk = map_chunks(settings, n_heads, chunk)
            raw[layer] = values.mean(dim=1).float().cpu().numpy()
        progress.rows(name, layer, ((raw[layer] - base) / span).astype(np.float32), raw.shape)
        progress.advance(1, f"path patching into {kind}: layer {layer + 1}/{n_layers}")
    return chunk


def _reverse(engine, reader, kind, receiver, writes, corrupt, raw, chunk, map_chunks, progress, name, base, span):
    """Fill ``raw`` [layer, head]: each earlier head alone into the one receiver's ``kind`` input
    (``receiver`` = (layer, index into ``kind``'s head axis: a key-value head for k/v under GQA))."""
    import torch

    n_layers, n_heads = raw.shape
    r_layer, r_head = receiver
    resid = corrupt[hooks.hook_name("resid_pre", r_layer)]
    current = corrupt[hooks.hook_name(kind, r_layer)]
    for layer in range(n_layers):
        progress.check_cancelled()
        if layer < r_layer:
            def settings(part, layer=layer):
                delta = writes[layer][part]  # [sender, prompt, pos, d_model]
                patched = reader(kind, r_layer, resid.unsqueeze(0) + delta.to(resid.dtype))[..., r_head, :]
                new = current.unsqueeze(0).repeat(delta.shape[0], 1, 1, 1, 1)
                new[:, :, :, r_head] = patched.to(new.dtype)
                return engine.logit_diffs_of(kind, r_layer, new)

            values, chunk = map_chunks(settings, n_heads, chunk)
            raw[layer] = values.mean(dim=1).float().cpu().numpy()
        progress.rows(name, layer, ((raw[layer] - base) / span).astype(np.float32), raw.shape)
        progress.advance(1, f"path patching into {kind}: layer {layer + 1}/{n_layers}")
    return chunk
