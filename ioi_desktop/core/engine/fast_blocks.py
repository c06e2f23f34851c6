"""Fast exact activation patching beyond GPT-2: rotary, RMSNorm, grouped-query and parallel blocks.

The same engine as ``fast_gpt2`` (restart from the cached corrupted run at the
patched layer, run only the suffix from the first changed position, query only
END in the last block, unembed only the two answer columns, batch many patch
settings per pass), generalised to the blocks most models use today:

- normalization: LayerNorm or RMSNorm, including Gemma's ``(1 + w)`` RMSNorm and
  Gemma 2/3's extra norms after attention and after the MLP; the norms are the
  model's own modules (``block.ln1.original_component``, ...), called directly,
  so their convention is the model's;
- rotary position embeddings, full or partial (``rotary_dim`` < ``d_head``), in
  the rotate-half convention; the cos/sin each layer receives are read once
  from the bridge's ``attn.hook_cos`` / ``attn.hook_sin`` (so local/global
  bases, as in Gemma 3, are the model's own);
- GPT-J's rotary convention: the first ``rotary_dim`` dimensions of each head
  rotate in adjacent pairs ``(x[2i], x[2i+1])`` (HF's ``rotate_every_two``),
  with each pair's sin/cos repeated twice; the sin/cos table comes from the
  model's own ``transformer.rotary_emb`` module (its bridge has no cos/sin
  hooks), called once for positions ``0 .. n_pos - 1``;
- grouped-query attention: ``k``/``v`` per key-value head (head ``h`` reads
  key-value head ``h // (n_heads / n_key_value_heads)``), patched per key-value
  head as TransformerLens's ``patching`` does;
- Qwen3 / Gemma 3 q/k norms (per ``d_head``, before the rotation; ``hook_q`` and
  ``hook_k`` are before the norm and the rotation, as in the bridge);
- attention-score soft-capping (Gemma 2), final-logit soft-capping, sliding
  windows (Mistral, Gemma 2/3: a key is seen when ``query - key < window``);
- gated MLPs (``act(x W_gate) * (x W_in) W_out``) and plain ones;
- parallel attention/MLP blocks (GPT-NeoX / Pythia, GPT-J): both read
  ``resid_pre`` and ``resid_post = resid_pre + attn_out + mlp_out``; there is no
  ``resid_mid``. GPT-J's attention and MLP share one LayerNorm (``ln1``).

Weights are the bridge's processed ones (``W_Q``, ``W_K``, ``W_V``, ``W_O``,
``W_gate``, ``W_in``, ``W_out``, ``W_U``; missing biases are zero). Gemma's
embedding scaling needs no code: the engine starts from the cached
``resid_pre``. ``self_check`` (inherited) reproduces the cached corrupted run
before the engine is used; anything this module does not model shows there and
the model falls back to the bridge engine with the reason.

Not covered (bridge engine): architectures outside ``FAMILIES``. On GPT-J,
TransformerLens fires ``hook_pattern`` after HF's attention has used the
pattern (edits are discarded), so the patching analysis refuses the pattern
grid there before any engine runs; the engine still reads the cached pattern
(the model's own) to patch ``v``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ioi_desktop.core.engine import fast_gpt2
from ioi_desktop.core.engine.fast_gpt2 import FastGPT2Engine
from ioi_desktop.core.hooks import hook_name

NAME = "fast"

# Architecture -> family name shown in the engine's reason.
FAMILIES = {
    "LlamaForCausalLM": "Llama",
    "MistralForCausalLM": "Mistral",
    "Qwen2ForCausalLM": "Qwen2",
    "Qwen3ForCausalLM": "Qwen3",
    "GemmaForCausalLM": "Gemma",
    "Gemma2ForCausalLM": "Gemma 2",
    "Gemma3ForCausalLM": "Gemma 3",
    "Phi3ForCausalLM": "Phi-3",
    "GPTNeoXForCausalLM": "GPT-NeoX",
    "GPTJForCausalLM": "GPT-J",
}
# Architectures whose rotary pairs are adjacent dimensions (HF's ``rotate_every_two``), with the
# sin/cos table read from the HF model's rotary module: its attribute path under ``original_model``.
_EVERY_TWO_ROTARY = {"GPTJForCausalLM": ("transformer", "rotary_emb")}
_ACTIVATIONS = {
    "silu": F.silu,
    "swish": F.silu,
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu": F.gelu,
    "relu": F.relu,
}
_ATTENTION_BRIDGES = {"PositionEmbeddingsAttentionBridge", "JointQKVPositionEmbeddingsAttentionBridge"}
# Attention bridges that wrap the HF attention whole, per architecture the engine models through them.
_WRAPPED_ATTENTION = {"GPTJForCausalLM": {"AttentionBridge": "GPTJAttention"}}


def _architecture(model) -> str | None:
    cfg = model.cfg
    return getattr(cfg, "architecture", None) or getattr(cfg, "original_architecture", None)


def _hf_config(model):
    return getattr(getattr(model, "original_model", None), "config", None)


def unsupported_reason(model) -> str | None:
    """Why this engine cannot run ``model`` (a TransformerBridge), or None if it can."""
    from ioi_desktop.core.devices import is_split

    cfg = model.cfg
    if is_split(model):
        return "the model is split across GPUs, which the bridge engine runs block by block"
    arch = _architecture(model)
    if arch not in FAMILIES:
        families = ", ".join(["GPT-2", *dict.fromkeys(FAMILIES.values())])
        return f"architecture {arch} is not in the fast engine's families ({families})"
    if getattr(cfg, "act_fn", None) not in _ACTIVATIONS:
        return f"activation {getattr(cfg, 'act_fn', None)} is not supported by the fast engine"
    if getattr(cfg, "positional_embedding_type", None) != "rotary":
        return "the fast engine's rotary path needs rotary position embeddings"
    for flag in ("rotary_adjacent_pairs", "rotary_interleaved_cos_sin", "use_split_qkv_input", "use_attn_in",
                 "use_attn_result", "gated_q_proj", "qk_norm_after_rope"):
        if getattr(cfg, flag, False):
            return f"the fast engine does not model {flag}"
    if model.W_U.dtype not in (torch.float32, torch.float64):
        return f"dtype {model.W_U.dtype} runs on the bridge engine (the fast engine is exact in float32)"
    head_dim = int(cfg.d_head)
    wrapped = _WRAPPED_ATTENTION.get(arch, {})
    for block in model.blocks:
        attn = block.attn
        hf_attn = attn.original_component
        kind = type(attn).__name__
        if kind in wrapped:
            if type(hf_attn).__name__ != wrapped[kind]:
                return f"attention {type(hf_attn).__name__} is not one the fast engine reads"
        elif kind not in _ATTENTION_BRIDGES:
            return f"attention {kind} is not one the fast engine reads"
        if getattr(hf_attn, "sinks", None) is not None:
            return "attention sinks are not modelled by the fast engine"
        for norm_name in ("q_norm", "k_norm"):
            norm = getattr(attn, norm_name, None)
            if norm is None:
                continue
            weight = getattr(getattr(norm, "original_component", None), "weight", None)
            if weight is None or tuple(weight.shape) != (head_dim,):
                return f"the {norm_name} layout is not the per-d_head norm the fast engine models"
    cos_hooks = {f"blocks.{layer}.attn.hook_{part}" for layer in range(int(cfg.n_layers)) for part in ("cos", "sin")}
    if arch in _EVERY_TWO_ROTARY:
        if _every_two_rotary_module(model) is None:
            return f"the {FAMILIES[arch]} model has no rotary module at {'.'.join(_EVERY_TWO_ROTARY[arch])}"
        if int(getattr(hf_attn, "rotary_dim", None) or head_dim) % 2:
            return "an odd rotary_dim is not modelled by the fast engine"
    elif not cos_hooks <= set(model.hook_dict):
        return "the bridge does not expose the rotary cos/sin each layer receives"
    hf_config = _hf_config(model)
    rope = getattr(hf_config, "rope_parameters", None)
    if isinstance(rope, dict) and rope.get("llama_4_scaling_beta") is not None:
        return "Llama-4 query scaling is not modelled by the fast engine"
    return None


def _every_two_rotary_module(model):
    """The HF rotary module of a ``_EVERY_TWO_ROTARY`` architecture, or None."""
    module = getattr(model, "original_model", None)
    for attr in _EVERY_TWO_ROTARY.get(_architecture(model), ("-",)):
        module = getattr(module, attr, None)
    return module


def _module(bridge_component):
    """The model's own module behind a bridge component (called directly: no hooks), or None."""
    if bridge_component is None:
        return None
    inner = getattr(bridge_component, "original_component", None)
    return bridge_component if inner is None else inner


def sliding_window(model, layer: int) -> int | None:
    """Keys a query at the sliding-window layer ``layer`` sees (None: all earlier ones)."""
    hf_config = _hf_config(model)
    window = getattr(hf_config, "sliding_window", None)
    if not window:
        return None
    layer_types = getattr(hf_config, "layer_types", None)
    if layer_types is not None:
        return int(window) if layer_types[layer] == "sliding_attention" else None
    if getattr(hf_config, "use_sliding_window", True) is False:
        return None
    return int(window)


class FastBlocksEngine(FastGPT2Engine):
    """Exact patched logit differences for rotary / RMSNorm / GQA / parallel-block bridges."""

    name = NAME

    def __init__(self, model, inputs) -> None:  # noqa: D107 - see the class docstring
        cfg = model.cfg
        self.inputs = inputs
        self.family = FAMILIES[_architecture(model)]
        self.n_layers = int(cfg.n_layers)
        self.n_heads = int(cfg.n_heads)
        self.d_head = int(cfg.d_head)
        self.n_kv = int(getattr(cfg, "n_key_value_heads", None) or self.n_heads)
        self.groups = self.n_heads // self.n_kv
        self.parallel = bool(getattr(cfg, "parallel_attn_mlp", False))
        self.every_two = _architecture(model) in _EVERY_TWO_ROTARY
        self.gated = bool(getattr(cfg, "gated_mlp", False))
        self.act = _ACTIVATIONS[cfg.act_fn]
        soft_cap = float(getattr(cfg, "output_logits_soft_cap", -1.0) or -1.0)
        self.logit_soft_cap = soft_cap if soft_cap > 0 else None
        n = self.n_layers
        blocks = list(model.blocks)
        with torch.no_grad():
            # Per-layer views of the processed weights (the bridge's stacked W_in etc. are copies).
            def layer_weights(name: str) -> list[torch.Tensor]:
                part, attr = name.split(".")
                return [getattr(getattr(block, part), attr).detach() for block in blocks]

            d_model = int(cfg.d_model)
            flat = lambda ws: [w.permute(1, 0, 2).reshape(d_model, -1) for w in ws]
            self.w_q, self.w_k, self.w_v = (flat(layer_weights(f"attn.{w}")) for w in ("W_Q", "W_K", "W_V"))
            w_q = self.w_q[0]
            self.b_q = self._bias(model, "b_Q", (n, self.n_heads * self.d_head), w_q)
            self.b_k = self._bias(model, "b_K", (n, self.n_kv * self.d_head), w_q)
            self.b_v = self._bias(model, "b_V", (n, self.n_kv * self.d_head), w_q)
            self.w_o = [w.reshape(-1, d_model) for w in layer_weights("attn.W_O")]
            self.b_o = self._bias(model, "b_O", (n, d_model), w_q)
            self.w_in, self.w_out = layer_weights("mlp.W_in"), layer_weights("mlp.W_out")
            d_mlp = self.w_in[0].shape[-1]
            self.b_in = self._bias(model, "b_in", (n, d_mlp), w_q)
            self.b_out = self._bias(model, "b_out", (n, d_model), w_q)
            self.w_gate = layer_weights("mlp.W_gate") if self.gated else None
            answers = torch.stack([inputs.correct_ids, inputs.incorrect_ids], dim=1)
            self.w_answers = model.W_U.detach()[:, answers].permute(1, 0, 2)
            self.b_answers = self._bias(model, "b_U", (model.W_U.shape[1],), w_q)[answers]
        self.ln1 = [_module(block.ln1) for block in blocks]
        self.ln2 = [_module(getattr(block, "ln2", None)) or _module(block.ln1) for block in blocks]
        self.ln1_post = [_module(getattr(block, "ln1_post", None)) for block in blocks]
        self.ln2_post = [_module(getattr(block, "ln2_post", None)) for block in blocks]
        self.ln_final = _module(model.ln_final)
        self.q_norm = [_module(getattr(block.attn, "q_norm", None)) for block in blocks]
        self.k_norm = [_module(getattr(block.attn, "k_norm", None)) for block in blocks]
        hf_attn = [block.attn.original_component for block in blocks]
        self.scaling = [float(getattr(a, "scaling", self.d_head**-0.5)) for a in hf_attn]
        self.score_cap = [getattr(a, "attn_logit_softcapping", None) for a in hf_attn]
        self.window = [sliding_window(model, layer) for layer in range(n)]
        self.cos, self.sin = self._rotary(model)
        corrupt = inputs.corrupt
        positions = torch.arange(inputs.n_pos, device=inputs.end_pos.device)
        with torch.no_grad():
            self.corrupt_k = [
                self._heads(self._rope(self._normed(corrupt(hook_name("k", l)), self.k_norm[l]), l, positions))
                for l in range(n)
            ]
            self.corrupt_v = [self._heads(corrupt(hook_name("v", l))) for l in range(n)]
            self.corrupt_q = [
                self._rope(self._normed(corrupt(hook_name("q", l)), self.q_norm[l]), l, positions)
                for l in range(n)
            ]

    # ------------------------------------------------------------ model pieces

    @staticmethod
    def _bias(model, name: str, shape, like: torch.Tensor) -> torch.Tensor:
        try:
            value = getattr(model, name)
        except AttributeError:  # the bridge's answer for a bias-free projection
            value = None
        if value is None:
            return torch.zeros(shape, dtype=like.dtype, device=like.device)
        return value.detach().reshape(shape)

    def _rotary(self, model) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The cos/sin each layer's attention receives, [pos, rotary_dim] (per layer: e.g. Gemma 3's two
        bases): from the cached corrupted run, else from one forward of one prompt."""
        if self.every_two:
            return self._every_two_rotary(model)
        names = {f"blocks.{layer}.attn.hook_{part}" for layer in range(self.n_layers) for part in ("cos", "sin")}
        missing = sorted(names - set(model.hook_dict))
        if missing:
            raise ValueError(f"the model has no rotary hook {missing[0]}")
        seen: dict[str, torch.Tensor] = {}
        try:  # cached with the corrupted run (``inputs.ROTARY_HOOKS``)
            seen = {name: self.inputs.corrupt(name)[0] for name in names}
        except KeyError:
            def keep(activation, hook):
                seen[hook.name] = activation.detach()[0]

            with torch.no_grad():
                model.run_with_hooks(self.inputs.corrupt_tokens[:1],
                                     fwd_hooks=[(name, keep) for name in sorted(names)])
        cos = [seen[f"blocks.{l}.attn.hook_cos"] for l in range(self.n_layers)]
        sin = [seen[f"blocks.{l}.attn.hook_sin"] for l in range(self.n_layers)]
        from transformer_lens.utilities.hf_utils import get_rotary_pct_from_config

        full = get_rotary_pct_from_config(model.cfg) == 1.0
        for layer, block in enumerate(model.blocks):
            # As the bridge does (GPT-OSS convention): half-width cos/sin of a full rotation
            # are duplicated, which is the rotate-half formula over all of d_head.
            if (type(block.attn).__name__ == "PositionEmbeddingsAttentionBridge" and full
                    and cos[layer].shape[-1] * 2 == self.d_head):
                cos[layer] = torch.cat([cos[layer], cos[layer]], dim=-1)
                sin[layer] = torch.cat([sin[layer], sin[layer]], dim=-1)
        return cos, sin

    def _every_two_rotary(self, model) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """GPT-J's cos/sin [pos, rotary_dim] from the model's rotary module: each pair's value twice
        (``repeat_interleave``, as HF's ``apply_rotary_pos_emb``); every layer gets the same table."""
        rotary = _every_two_rotary_module(model)
        like = self.w_q[0]
        positions = torch.arange(self.inputs.n_pos, device=like.device).unsqueeze(0)
        with torch.no_grad():
            sin, cos = rotary(like.new_zeros(1, self.inputs.n_pos, 1), position_ids=positions)
        cos = cos[0].repeat_interleave(2, dim=-1)
        sin = sin[0].repeat_interleave(2, dim=-1)
        return [cos] * self.n_layers, [sin] * self.n_layers

    @staticmethod
    def _heads(x: torch.Tensor) -> torch.Tensor:
        """[..., head, d_head] -> [..., head*d_head] (query or key-value heads)."""
        return x.flatten(-2)

    @staticmethod
    def _normed(x: torch.Tensor, norm) -> torch.Tensor:
        return x if norm is None else norm(x)

    def _rope(self, x: torch.Tensor, layer: int, pos: torch.Tensor) -> torch.Tensor:
        """Rotate ``x`` [..., n, head, d_head] at absolute positions ``pos`` ([n] or [rows, n])."""
        cos, sin = self.cos[layer][pos].unsqueeze(-2), self.sin[layer][pos].unsqueeze(-2)
        rot = cos.shape[-1]
        x_rot, x_pass = x[..., :rot], x[..., rot:]
        if self.every_two:  # (x0, x1, x2, x3, ...) -> (-x1, x0, -x3, x2, ...)
            rotated = torch.stack((-x_rot[..., 1::2], x_rot[..., ::2]), dim=-1).flatten(-2)
        else:
            half = rot // 2
            rotated = torch.cat((-x_rot[..., half:], x_rot[..., :half]), dim=-1)
        out = x_rot * cos + rotated * sin
        return out if rot == x.shape[-1] else torch.cat([out, x_pass], dim=-1)

    def _attend(self, q, k, v, query_pos, layer: int = 0) -> torch.Tensor:
        """Attention of rotated queries at absolute ``query_pos`` over rotated keys from position 0.

        ``q`` [row, query, head*d_head]; ``k``, ``v`` [row, key, kv_head*d_head].
        Returns z [row, query, head*d_head].
        """
        rows, n_query, n_key = q.shape[0], q.shape[1], k.shape[1]
        q = q.view(rows, n_query, self.n_heads, self.d_head).transpose(1, 2)
        k = k.view(rows, n_key, self.n_kv, self.d_head).transpose(1, 2)
        v = v.view(rows, n_key, self.n_kv, self.d_head).transpose(1, 2)
        if self.groups > 1:
            k, v = k.repeat_interleave(self.groups, dim=1), v.repeat_interleave(self.groups, dim=1)
        scores = q @ k.transpose(-1, -2) * self.scaling[layer]
        cap = self.score_cap[layer]
        if cap:
            scores = torch.tanh(scores / cap) * cap
        key_pos = torch.arange(n_key, device=q.device).view(1, 1, 1, n_key)
        query_pos = query_pos.view(rows, 1, n_query, 1)
        blocked = key_pos > query_pos
        if self.window[layer] is not None:
            blocked = blocked | (query_pos - key_pos >= self.window[layer])
        pattern = scores.masked_fill(blocked, float("-inf")).softmax(dim=-1)
        z = pattern @ v
        return z.transpose(1, 2).reshape(rows, n_query, -1)

    def _attn_output(self, layer: int, z: torch.Tensor) -> torch.Tensor:
        """``hook_attn_out`` from z [..., head*d_head] (after Gemma 2/3's post-attention norm)."""
        out = z @ self.w_o[layer] + self.b_o[layer]
        return self._normed(out, self.ln1_post[layer])

    def _mlp_output(self, layer: int, resid: torch.Tensor) -> torch.Tensor:
        """``hook_mlp_out`` of the residual stream the MLP reads."""
        h = self.ln2[layer](resid)
        pre = h @ self.w_in[layer] + self.b_in[layer]
        hidden = self.act(h @ self.w_gate[layer]) * pre if self.gated else self.act(pre)
        return self._normed(hidden @ self.w_out[layer] + self.b_out[layer], self.ln2_post[layer])

    def _mlp(self, layer: int, resid_mid: torch.Tensor) -> torch.Tensor:
        return resid_mid + self._mlp_output(layer, resid_mid)

    def _attn(self, layer: int, resid: torch.Tensor, prompt: torch.Tensor, start: int,
              end_index: torch.Tensor | None) -> torch.Tensor:
        """The block's output for a suffix from absolute position ``start``: resid_mid, or resid_post
        for a parallel block. The prefix's keys/values come from the corrupted run; with
        ``end_index`` only each row's END is queried."""
        rows = torch.arange(resid.shape[0], device=resid.device)
        n_suffix = resid.shape[1]
        h = self.ln1[layer](resid)
        key_pos = start + torch.arange(n_suffix, device=resid.device)
        split = lambda t, heads: t.view(*t.shape[:-1], heads, self.d_head)
        k = split(h @ self.w_k[layer] + self.b_k[layer], self.n_kv)
        k = self._heads(self._rope(self._normed(k, self.k_norm[layer]), layer, key_pos))
        v = h @ self.w_v[layer] + self.b_v[layer]
        if start > 0:
            k = torch.cat([self.corrupt_k[layer][prompt, :start], k], dim=1)
            v = torch.cat([self.corrupt_v[layer][prompt, :start], v], dim=1)
        if end_index is None:
            query_pos = key_pos.expand(resid.shape[0], -1)
        else:
            resid, h = resid[rows, end_index].unsqueeze(1), h[rows, end_index].unsqueeze(1)
            query_pos = (start + end_index).unsqueeze(1)
        q = split(h @ self.w_q[layer] + self.b_q[layer], self.n_heads)
        q = self._heads(self._rope(self._normed(q, self.q_norm[layer]), layer, query_pos))
        attn_out = self._attn_output(layer, self._attend(q, k, v, query_pos, layer))
        if self.parallel:
            return resid + attn_out + self._mlp_output(layer, resid)
        return resid + attn_out

    def _run_from(self, layer: int, stage: str, resid: torch.Tensor, prompt: torch.Tensor,
                  start: int) -> torch.Tensor:
        """Logit difference at END from a residual at ``stage`` ("pre"/"mid"/"post") of ``layer``
        (see ``FastGPT2Engine._run_from``); parallel blocks have no "mid"."""
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
                if self.parallel:
                    continue
            if block == last and not at_end:
                resid, at_end = resid[rows, end_index].unsqueeze(1), True
            resid = self._mlp(block, resid)
            stage = "pre"
        if not at_end:
            resid = resid[rows, end_index].unsqueeze(1)
        final = self.ln_final(resid[:, 0])
        logits = torch.einsum("rd,rda->ra", final, self.w_answers[prompt]) + self.b_answers[prompt]
        if self.logit_soft_cap is not None:
            logits = torch.tanh(logits / self.logit_soft_cap) * self.logit_soft_cap
        return logits[:, 0] - logits[:, 1]

    # ------------------------------------------------------------ patching

    def _expand_kv(self, x: torch.Tensor) -> torch.Tensor:
        """[..., kv_head, d_head] -> [..., head, d_head] (query head h reads kv head h // groups)."""
        return x if self.groups == 1 else x.repeat_interleave(self.groups, dim=-2)

    def _corrupt_attn_out(self, layer: int, window: slice, stop: int) -> torch.Tensor:
        """The corrupted run's ``hook_attn_out`` at ``window`` [prompt, pos, d_model], from its pattern and v."""
        corrupt = self.inputs.corrupt
        pattern = corrupt(hook_name("pattern", layer))[:, :, window, :stop]
        v = self._expand_kv(corrupt(hook_name("v", layer))[:, :stop])
        z = torch.einsum("phqk,pkhe->pqhe", pattern, v)
        return self._attn_output(layer, z.flatten(-2))

    def _patched_resid(self, kind: str, layer: int, new: torch.Tensor, start: int, stop: int):
        """The residual stream right after the patch, positions ``start:stop``, and its stage."""
        corrupt = self.inputs.corrupt
        n = new.shape[0]
        window = slice(start, stop)
        resid_pre = corrupt(hook_name("resid_pre", layer))[:, window]
        if kind == "resid_pre":
            return new[:, :, window], "pre"
        if kind == "mlp_out":
            if self.parallel:
                return resid_pre + self._corrupt_attn_out(layer, window, stop) + new[:, :, window], "post"
            return corrupt(hook_name("resid_mid", layer))[:, window] + new[:, :, window], "post"
        if kind == "attn_out":
            attn_out = new[:, :, window]
        else:
            if kind == "z":
                z = new[:, :, window]
            elif kind == "v":
                pattern = corrupt(hook_name("pattern", layer))[:, :, window, :stop]
                z = torch.einsum("phqk,npkhe->npqhe", pattern, self._expand_kv(new[:, :, :stop]))
            elif kind == "pattern":
                v = self._expand_kv(corrupt(hook_name("v", layer))[:, :stop])
                z = torch.einsum("nphqk,pkhe->npqhe", new[:, :, :, window, :stop], v)
            else:
                z = self._z_from_qk(kind, layer, new, start, stop, n)
            attn_out = self._attn_output(layer, z.flatten(-2))
        if self.parallel:
            return resid_pre + attn_out + self._mlp_output(layer, resid_pre), "post"
        return resid_pre + attn_out, "mid"

    def _z_from_qk(self, kind: str, layer: int, new: torch.Tensor, start: int, stop: int, n: int):
        """z [setting, prompt, query, head, d_head] with patched (pre-norm, pre-rotary) q or k."""
        device = new.device
        if kind == "q":
            q = self._rope(self._normed(new[:, :, start:stop], self.q_norm[layer]), layer,
                           torch.arange(start, stop, device=device))
            k = self.corrupt_k[layer][:, :stop].unsqueeze(0).expand(n, -1, -1, -1)
        else:
            q = self.corrupt_q[layer][:, start:stop].unsqueeze(0).expand(n, -1, -1, -1, -1)
            k = self._heads(self._rope(self._normed(new[:, :, :stop], self.k_norm[layer]), layer,
                                       torch.arange(stop, device=device)))
        rows = q.shape[0] * q.shape[1]
        query_pos = start + torch.arange(stop - start, device=device).expand(rows, -1)
        v = self.corrupt_v[layer][:, :stop].unsqueeze(0).expand(n, -1, -1, -1)
        z = self._attend(q.reshape(rows, stop - start, -1), k.reshape(rows, stop, -1),
                         v.reshape(rows, stop, -1), query_pos, layer)
        return z.view(n, -1, stop - start, self.n_heads, self.d_head)


def fast_engine_for(model):
    """The fast engine class for ``model`` and None, or None and why no fast engine fits."""
    reason = fast_gpt2.unsupported_reason(model)
    if reason is None:
        return FastGPT2Engine, None
    if _architecture(model) == "GPT2LMHeadModel":
        return None, reason
    reason = unsupported_reason(model)
    return (FastBlocksEngine, None) if reason is None else (None, reason)
