"""Fast exact activation patching for the GPT-2 family, in plain torch.

TransformerLens's ``patching`` module runs one full forward pass per patched
cell. The answer only needs each prompt's logit difference at its END
position, and most of that forward repeats the corrupted run, so this engine
recomputes only what a patch can change:

- It starts from the cached corrupted activations at the patched layer instead
  of the embeddings (blocks before the patch are unchanged).
- A head patch changes ``resid_mid`` by that head's new output only: the new
  ``z`` (from the clean ``z``, or recomputed from a clean ``v``, ``pattern``,
  ``q`` or ``k`` with the other corrupted parts) times ``W_O``.
- By causality, positions before the first position the patch changes keep
  their corrupted values in every later layer, so only the suffix is run,
  attending to the cached corrupted keys and values of the prefix. A cell whose
  patch changes nothing returns the corrupted metric exactly, with no forward.
- The last block runs queries, attention output and MLP at END only, and the
  unembedding uses only the two answer columns of ``W_U``.
- Many patch settings (e.g. the heads of a layer) go through one batched pass.

The weights are the bridge's processed ones (``W_Q``, ..., ``W_U``) and the
LayerNorms are read from the bridge's blocks, so the result is the same model
the bridge runs; ``self_check`` verifies that on the corrupted run before use.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ioi_desktop.core.engine.inputs import (
    PatchInputs,
    first_changed_pos,
    patched_activation,
)
from ioi_desktop.core.hooks import hook_name

NAME = "fast"

_ARCHITECTURES = {"GPT2LMHeadModel"}
_ACTIVATIONS = {
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "gelu": F.gelu,
    "relu": F.relu,
}


def unsupported_reason(model) -> str | None:
    """Why this engine cannot run ``model`` (a TransformerBridge), or None if it can."""
    from ioi_desktop.core.devices import is_split

    cfg = model.cfg
    if is_split(model):
        return "the model is split across GPUs, which the bridge engine runs block by block"
    arch = getattr(cfg, "architecture", None) or getattr(cfg, "original_architecture", None)
    if arch not in _ARCHITECTURES:
        return f"architecture {arch} is not in the fast engine's GPT-2 family"
    if getattr(cfg, "act_fn", None) not in _ACTIVATIONS:
        return f"activation {getattr(cfg, 'act_fn', None)} is not supported by the fast engine"
    if getattr(cfg, "positional_embedding_type", "standard") != "standard":
        return "only learned absolute position embeddings are supported by the fast engine"
    norms = [norm for block in model.blocks for norm in (block.ln1, block.ln2)] + [model.ln_final]
    if not all(isinstance(getattr(norm, "_original_component", None), torch.nn.LayerNorm) for norm in norms):
        return "the model's normalization layers are not LayerNorms the fast engine can read"
    if model.W_U.dtype not in (torch.float32, torch.float64):
        return f"dtype {model.W_U.dtype} runs on the bridge engine (the fast engine is exact in float32)"
    return None


def _layer_norm(module):
    """``(weight, bias, eps)`` of a bridge NormalizationBridge wrapping ``nn.LayerNorm``."""
    inner = getattr(module, "_original_component", module)
    return inner.weight.detach(), inner.bias.detach(), float(inner.eps)


class FastGPT2Engine:
    """Exact patched logit differences for GPT-2-family bridges (see module docstring)."""

    name = NAME

    def __init__(self, model, inputs: PatchInputs) -> None:
        cfg = model.cfg
        self.inputs = inputs
        self.n_layers = int(cfg.n_layers)
        self.n_heads = int(cfg.n_heads)
        self.d_head = int(cfg.d_head)
        self.act = _ACTIVATIONS[cfg.act_fn]
        self.attn_scale = 1.0 / (
            float(cfg.attn_scale) if getattr(cfg, "attn_scale", -1.0) > 0 else math.sqrt(self.d_head)
        )
        with torch.no_grad():
            w_q, w_k, w_v = (getattr(model, n).detach() for n in ("W_Q", "W_K", "W_V"))
            d_model = w_q.shape[2]
            # [layer, head, d_model, d_head] -> [layer, d_model, head*d_head]: one matmul per layer
            flat = lambda w: w.permute(0, 2, 1, 3).reshape(self.n_layers, d_model, -1)
            self.w_q, self.w_k, self.w_v = flat(w_q), flat(w_k), flat(w_v)
            self.b_q, self.b_k, self.b_v = (
                getattr(model, n).detach().reshape(self.n_layers, -1) for n in ("b_Q", "b_K", "b_V")
            )
            self.w_o = model.W_O.detach().reshape(self.n_layers, -1, d_model)
            self.b_o = model.b_O.detach()
            self.w_in, self.b_in = model.W_in.detach(), model.b_in.detach()
            self.w_out, self.b_out = model.W_out.detach(), model.b_out.detach()
            answers = torch.stack([inputs.correct_ids, inputs.incorrect_ids], dim=1)  # [prompt, 2]
            self.w_answers = model.W_U.detach()[:, answers].permute(1, 0, 2)  # [prompt, d_model, 2]
            self.b_answers = model.b_U.detach()[answers]  # [prompt, 2]
            self.ln1 = [_layer_norm(block.ln1) for block in model.blocks]
            self.ln2 = [_layer_norm(block.ln2) for block in model.blocks]
            self.ln_final = _layer_norm(model.ln_final)
        corrupt = inputs.corrupt
        self.corrupt_k = [self._heads(corrupt(hook_name("k", l))) for l in range(self.n_layers)]
        self.corrupt_v = [self._heads(corrupt(hook_name("v", l))) for l in range(self.n_layers)]

    # ------------------------------------------------------------ model pieces

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(*x.shape[:-2], self.n_heads * self.d_head)

    @staticmethod
    def _norm(x: torch.Tensor, ln) -> torch.Tensor:
        weight, bias, eps = ln
        return F.layer_norm(x, x.shape[-1:], weight, bias, eps)

    def _attend(self, q, k, v, query_pos) -> torch.Tensor:
        """Causal attention of queries at absolute ``query_pos`` over keys from position 0.

        ``q`` [row, query, head*d_head]; ``k``, ``v`` [row, key, head*d_head];
        ``query_pos`` [row, query] absolute positions. Returns z flattened the same way.
        """
        rows, n_query, n_key = q.shape[0], q.shape[1], k.shape[1]
        split = lambda t, n: t.view(rows, n, self.n_heads, self.d_head).transpose(1, 2)
        scores = split(q, n_query) @ split(k, n_key).transpose(-1, -2) * self.attn_scale
        key_pos = torch.arange(n_key, device=q.device)
        blocked = key_pos.view(1, 1, 1, n_key) > query_pos.view(rows, 1, n_query, 1)
        pattern = scores.masked_fill(blocked, float("-inf")).softmax(dim=-1)
        z = pattern @ split(v, n_key)
        return z.transpose(1, 2).reshape(rows, n_query, -1)

    def _mlp(self, layer: int, resid_mid: torch.Tensor) -> torch.Tensor:
        hidden = self.act(self._norm(resid_mid, self.ln2[layer]) @ self.w_in[layer] + self.b_in[layer])
        return resid_mid + hidden @ self.w_out[layer] + self.b_out[layer]

    def _attn(self, layer: int, resid: torch.Tensor, prompt: torch.Tensor, start: int,
              end_index: torch.Tensor | None) -> torch.Tensor:
        """resid_mid of block ``layer`` for a suffix starting at absolute position ``start``.

        The prefix's keys/values come from the corrupted run. With
        ``end_index`` only that suffix position (each row's END) is queried.
        """
        h = self._norm(resid, self.ln1[layer])
        k = h @ self.w_k[layer] + self.b_k[layer]
        v = h @ self.w_v[layer] + self.b_v[layer]
        if start > 0:
            k = torch.cat([self.corrupt_k[layer][prompt, :start], k], dim=1)
            v = torch.cat([self.corrupt_v[layer][prompt, :start], v], dim=1)
        rows = torch.arange(resid.shape[0], device=resid.device)
        if end_index is None:
            query_pos = start + torch.arange(resid.shape[1], device=resid.device).expand(resid.shape[0], -1)
        else:
            resid, h = resid[rows, end_index].unsqueeze(1), h[rows, end_index].unsqueeze(1)
            query_pos = (start + end_index).unsqueeze(1)
        q = h @ self.w_q[layer] + self.b_q[layer]
        z = self._attend(q, k, v, query_pos)
        return resid + z @ self.w_o[layer] + self.b_o[layer]

    def _run_from(self, layer: int, stage: str, resid: torch.Tensor, prompt: torch.Tensor,
                  start: int) -> torch.Tensor:
        """Logit difference at END from a residual at ``stage`` ("pre"/"mid"/"post") of ``layer``.

        ``resid`` [row, suffix_pos, d_model] holds positions ``start ...``;
        ``prompt`` [row] says which prompt each row is. Rows whose END is
        before ``start`` return garbage; callers keep the corrupted value there.
        """
        last = self.n_layers - 1
        end_index = (self.inputs.end_pos[prompt] - start).clamp(min=0)
        rows = torch.arange(resid.shape[0], device=resid.device)
        at_end = False
        if stage == "post":
            layer, stage = layer + 1, "pre"
        for block in range(layer, self.n_layers):
            if stage == "pre":
                resid = self._attn(block, resid, prompt, start, end_index if block == last else None)
                at_end = block == last
            if block == last and not at_end:
                resid, at_end = resid[rows, end_index].unsqueeze(1), True
            resid = self._mlp(block, resid)
            stage = "pre"
        if not at_end:
            resid = resid[rows, end_index].unsqueeze(1)
        final = self._norm(resid[:, 0], self.ln_final)
        logits = torch.einsum("rd,rda->ra", final, self.w_answers[prompt]) + self.b_answers[prompt]
        return logits[:, 0] - logits[:, 1]

    # ------------------------------------------------------------ patching

    def _patched_resid(self, kind: str, layer: int, new: torch.Tensor, start: int, stop: int):
        """The residual stream right after the patch, positions ``start:stop``, and its stage."""
        corrupt = self.inputs.corrupt
        n = new.shape[0]
        window = slice(start, stop)
        if kind == "resid_pre":
            return new[:, :, window], "pre"
        if kind == "attn_out":
            return corrupt(hook_name("resid_pre", layer))[:, window] + new[:, :, window], "mid"
        if kind == "mlp_out":
            return corrupt(hook_name("resid_mid", layer))[:, window] + new[:, :, window], "post"
        if kind == "z":
            z = new[:, :, window]
        elif kind == "v":
            pattern = corrupt(hook_name("pattern", layer))[:, :, window, :stop]
            z = torch.einsum("phqk,npkhe->npqhe", pattern, new[:, :, :stop])
        elif kind == "pattern":
            v = corrupt(hook_name("v", layer))[:, :stop]
            z = torch.einsum("nphqk,pkhe->npqhe", new[:, :, :, window, :stop], v)
        else:
            q = corrupt(hook_name("q", layer))[:, window].unsqueeze(0).expand(n, -1, -1, -1, -1)
            k = corrupt(hook_name("k", layer))[:, :stop].unsqueeze(0).expand(n, -1, -1, -1, -1)
            if kind == "q":
                q = new[:, :, window]
            else:
                k = new[:, :, :stop]
            rows = q.shape[0] * q.shape[1]
            query_pos = start + torch.arange(stop - start, device=q.device).expand(rows, -1)
            z = self._attend(
                q.reshape(rows, stop - start, -1), k.reshape(rows, stop, -1),
                self.corrupt_v[layer][:, :stop].unsqueeze(0).expand(n, -1, -1, -1).reshape(rows, stop, -1),
                query_pos,
            ).view(n, -1, stop - start, self.n_heads, self.d_head)
        attn_out = z.flatten(-2) @ self.w_o[layer] + self.b_o[layer]
        return corrupt(hook_name("resid_pre", layer))[:, window] + attn_out, "mid"

    def patched_logit_diffs(self, kind: str, layer: int, masks: torch.Tensor) -> torch.Tensor:
        """Per-prompt logit difference of each patch setting: [setting, prompt].

        ``masks`` (see ``inputs.patched_activation``) marks where the clean
        activation replaces the corrupted one.
        """
        with torch.no_grad():
            return self.logit_diffs_of(kind, layer, patched_activation(self.inputs, kind, layer, masks))

    def logit_diffs_of(self, kind: str, layer: int, new: torch.Tensor) -> torch.Tensor:
        """Per-prompt logit difference with activation ``kind`` of ``layer`` replaced by ``new``:
        [setting, prompt] for ``new`` [setting, *activation shape] (any values, e.g. path patching's)."""
        inputs = self.inputs
        with torch.no_grad():
            changed, first = first_changed_pos(kind, new, inputs.corrupt(hook_name(kind, layer)))
            # A prompt whose END is before the first change cannot see it.
            changed &= first <= inputs.end_pos.unsqueeze(0)
            out = inputs.corrupt_logit_diff.unsqueeze(0).expand(new.shape[0], -1).clone()
            stop = int(inputs.end_pos.max()) + 1
            start_of_setting = torch.where(changed, first, stop).amin(dim=1)
            for start in torch.unique(start_of_setting).tolist():
                if start >= stop:
                    continue
                settings = (start_of_setting == start).nonzero().flatten()
                resid, stage = self._patched_resid(kind, layer, new[settings], start, stop)
                # Only the (setting, prompt) rows the patch changes are run.
                setting, prompt = changed[settings].nonzero(as_tuple=True)
                resid = resid.expand(len(settings), *resid.shape[1:])[setting, prompt]
                out[settings[setting], prompt] = self._run_from(layer, stage, resid, prompt, start)
        return out

    def self_check(self, tolerance: float = 1e-4) -> str | None:
        """Recompute the corrupted run from its embeddings; a mismatch means this engine does not fit.

        One prompt (the longest) is enough to catch an architecture detail this
        engine does not model, at an eighth of the cost of the notebook's set.
        Returns None when the engine reproduces the cached corrupted logit
        difference, else a sentence saying how far off it is.
        """
        inputs = self.inputs
        with torch.no_grad():
            longest = int(inputs.end_pos.argmax())
            stop = int(inputs.end_pos[longest]) + 1
            resid = inputs.corrupt(hook_name("resid_pre", 0))[longest : longest + 1, :stop]
            prompt = torch.tensor([longest], device=resid.device)
            value = self._run_from(0, "pre", resid, prompt, 0)
            error = float((value - inputs.corrupt_logit_diff[longest]).abs().max())
        scale = max(1.0, abs(float(inputs.corrupt_logit_diff[longest])))
        if not math.isfinite(error) or error > tolerance * scale:
            return f"the fast engine's forward pass differs from the model's by {error:.3g}"
        return None
