"""What an exact-patching engine reads: the two cached runs and the metric's targets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ioi_desktop.core.hooks import hook_name

# The activations a sweep can patch, by their short hook kind (see ``core.hooks``).
POSITION_KINDS = ("resid_pre", "attn_out", "mlp_out")
HEAD_KINDS = ("z", "v", "pattern", "q", "k")
PATCH_KINDS = POSITION_KINDS + HEAD_KINDS

# Corrupted-run activations the engines read besides the patched ones: the
# residual stream to restart from, and the keys/values/queries/patterns that an
# unchanged prefix or an unpatched part of a head reuses.
_CONTEXT_KINDS = ("resid_pre", "resid_mid", "q", "k", "v", "pattern")
# Rotary models' bridges also expose the cos/sin each layer's attention receives
# (the fast engine reads them; other models lack them, which the runner records).
ROTARY_HOOKS = ("attn.hook_cos", "attn.hook_sin")


def hooks_for_kinds(kinds, n_layers: int) -> set[str]:
    """Hook names both cached runs must hold for patching ``kinds`` at every layer."""
    wanted = set(kinds) | set(_CONTEXT_KINDS)
    names = {hook_name(kind, layer) for kind in wanted for layer in range(n_layers)}
    return names | {f"blocks.{layer}.{suffix}" for suffix in ROTARY_HOOKS for layer in range(n_layers)}


@dataclass(frozen=True)
class PatchInputs:
    """The clean and corrupted runs a sweep patches between, and the metric's targets.

    ``clean(name)`` / ``corrupt(name)`` return a cached activation (TransformerLens
    layout, batch first) of that run. The metric of a patched run is each
    prompt's logit difference ``logit[correct] - logit[incorrect]`` at its own
    ``end_pos``; ``corrupt_logit_diff`` is that metric on the unpatched
    corrupted run, which a patch that changes nothing returns exactly.
    """

    clean: Callable[[str], torch.Tensor]
    corrupt: Callable[[str], torch.Tensor]
    corrupt_tokens: torch.Tensor  # [prompt, pos]
    end_pos: torch.Tensor  # [prompt], long
    correct_ids: torch.Tensor  # [prompt], long
    incorrect_ids: torch.Tensor  # [prompt], long
    corrupt_logit_diff: torch.Tensor  # [prompt]

    @property
    def n_prompts(self) -> int:
        return int(self.end_pos.shape[0])

    @property
    def n_pos(self) -> int:
        return int(self.corrupt_tokens.shape[1])


def patched_activation(inputs: PatchInputs, kind: str, layer: int, masks: torch.Tensor) -> torch.Tensor:
    """The activation of each patch setting: clean where ``masks`` is True, corrupted elsewhere.

    ``masks`` is [setting, prompt, pos] for position kinds and
    [setting, prompt, pos, head] for head kinds (``pos`` is the query position
    for ``pattern``, whose hook is [prompt, head, query_pos, key_pos]).
    Returns [setting, *activation shape].
    """
    name = hook_name(kind, layer)
    clean, corrupt = inputs.clean(name), inputs.corrupt(name)
    if kind in POSITION_KINDS:
        select = masks[..., None]
    elif kind == "pattern":
        select = masks.permute(0, 1, 3, 2)[..., None]
    else:
        select = masks[..., None]
    return torch.where(select, clean.unsqueeze(0), corrupt.unsqueeze(0))


def first_changed_pos(kind: str, new: torch.Tensor, corrupt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per setting and prompt: whether the patch changes anything, and the first changed position.

    By causality nothing before that position changes downstream, so engines
    restart there and reuse the corrupted run's prefix. For ``pattern`` the
    position is the query position. Returns ``(changed [setting, prompt] bool,
    start [setting, prompt] long)``; ``start`` is ``n_pos`` where unchanged.
    """
    differs = new != corrupt.unsqueeze(0)
    if kind == "pattern":
        per_pos = differs.any(dim=-1).any(dim=2)  # [setting, prompt, query_pos]
    elif kind in POSITION_KINDS:
        per_pos = differs.any(dim=-1)
    else:
        per_pos = differs.flatten(3).any(dim=-1)
    n_pos = per_pos.shape[-1]
    changed = per_pos.any(dim=-1)
    positions = torch.arange(n_pos, device=per_pos.device)
    start = torch.where(per_pos, positions, n_pos).amin(dim=-1)
    return changed, start
