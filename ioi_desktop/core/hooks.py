"""TransformerLens hook names, built in one place.

Every analysis asks for activations by these names (the HookedTransformer names
that a ``TransformerBridge`` in compatibility mode also exposes), so a rename
upstream is a one-line change here.
"""

from __future__ import annotations

# Per-block hook points: short name -> name inside ``blocks.{layer}``.
_BLOCK_HOOKS = {
    "resid_pre": "hook_resid_pre",
    "resid_mid": "hook_resid_mid",
    "resid_post": "hook_resid_post",
    "attn_out": "hook_attn_out",
    "mlp_out": "hook_mlp_out",
    "q": "attn.hook_q",
    "k": "attn.hook_k",
    "v": "attn.hook_v",
    "z": "attn.hook_z",
    "pattern": "attn.hook_pattern",
    "attn_scores": "attn.hook_attn_scores",
    "result": "attn.hook_result",
    "scale_ln1": "ln1.hook_scale",
    "scale_ln2": "ln2.hook_scale",
    "mlp_post": "mlp.hook_post",
}
BLOCK_HOOK_KINDS: tuple[str, ...] = tuple(_BLOCK_HOOKS)  # the ``kind`` values hook_name accepts

# Hook points outside the blocks.
EMBED = "hook_embed"
POS_EMBED = "hook_pos_embed"
LN_FINAL_SCALE = "ln_final.hook_scale"


def hook_name(kind: str, layer: int) -> str:
    """The hook name of activation ``kind`` in block ``layer``.

    ``hook_name("z", 3)`` -> ``"blocks.3.attn.hook_z"``; ``kind`` is one of
    ``resid_pre, resid_mid, resid_post, attn_out, mlp_out, q, k, v, z, pattern,
    attn_scores, result, scale_ln1, scale_ln2, mlp_post``.
    """
    try:
        suffix = _BLOCK_HOOKS[kind]
    except KeyError:
        raise ValueError(f"unknown hook kind {kind!r}; known: {sorted(_BLOCK_HOOKS)}") from None
    return f"blocks.{int(layer)}.{suffix}"


def hook_names(kind: str, n_layers: int) -> list[str]:
    """``hook_name(kind, layer)`` for every layer ``0 .. n_layers-1``."""
    return [hook_name(kind, layer) for layer in range(n_layers)]


def attention_layers(model) -> list[int]:
    """The layers whose attention TransformerLens exposes per head (``attn.hook_pattern``): every layer,
    or a hybrid's attention layers only (its other layers mix tokens without heads). A model
    without a ``hook_dict`` is taken to have attention in every layer."""
    n_layers = int(model.cfg.n_layers)
    hook_dict = getattr(model, "hook_dict", None)
    if hook_dict is None:
        return list(range(n_layers))
    return [layer for layer in range(n_layers) if hook_name("pattern", layer) in hook_dict]


def resid_final_name(n_layers: int) -> str:
    """The residual stream after the last block (``blocks.{n_layers-1}.hook_resid_post``)."""
    return hook_name("resid_post", n_layers - 1)
