"""Whether an edit to a hook point reaches the model's output.

Some TransformerLens bridges fire a hook on a tensor the wrapped Hugging Face
module has already used (``hook_pattern`` on OPT, GPT-Neo and XGLM, whose
attention runs inside the HF module): the hook sees the value, but what it
returns is discarded (TransformerLens warns "The edit is discarded"). Patching
such a hook would silently give the corrupted run back, i.e. zeros. This
module tries one edit on one prompt and says whether the logits moved, so the
analyses can refuse that grid with a sentence instead.
"""

from __future__ import annotations

import warnings

from ioi_desktop.core.hooks import hook_name


def _edited(kind: str, activation):
    """A clearly different value of ``activation`` (a valid pattern for ``pattern``)."""
    import torch

    if kind == "pattern":  # [batch, head, q, k]: all attention on the first key
        new = torch.zeros_like(activation)
        new[..., 0] = 1.0
        return new
    return activation + 1.0 + activation.abs()


def edit_reaches_output(model, tokens, kind: str, layer: int = 0) -> bool:
    """Whether replacing hook ``kind`` of ``layer`` changes the logits on ``tokens`` [1, pos]."""
    import torch

    name = hook_name(kind, layer)
    if name not in getattr(model, "hook_dict", {name: None}):
        return False
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = model(tokens)
        with model.hooks(fwd_hooks=[(name, lambda activation, hook: _edited(kind, activation))]):
            edited = model(tokens)
    return not torch.equal(plain, edited)


def discarded_edit_sentence(architecture: str, kind: str, grid: str) -> str:
    """The refusal of a grid whose hook TransformerLens does not let edits through."""
    return (f"The {grid} grid is not available for {architecture}: TransformerLens discards edits to "
            f"hook_{kind} on this architecture (its attention runs inside the Hugging Face module), "
            "so patching it would show zeros.")
