"""Helpers every analysis shares: the IOI metric at END, answer ids, labels, float32 output.

The metric is the logit difference ``logit(correct) - logit(incorrect)`` at
each prompt's last token (END), as in Wang et al. 2022 and TransformerLens's
Exploratory Analysis Demo; correct is the indirect object (IO), incorrect the
subject (S). This module imports torch; analysis modules import it inside
their functions so their Options/Result types stay importable without torch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from jaxtyping import Float, Int


def end_index(batch: Any, device: torch.device) -> Int[torch.Tensor, "prompt"]:
    """Each prompt's END position (prompts may differ in length)."""
    return torch.as_tensor(np.asarray(batch.end_pos, dtype=np.int64), device=device)


def at_end(activation: Float[torch.Tensor, "prompt pos ..."], end: Int[torch.Tensor, "prompt"]) -> torch.Tensor:
    """``activation[p, end[p], ...]`` for every prompt ``p``."""
    return activation[torch.arange(activation.shape[0], device=activation.device), end]


def answer_ids(batch: Any, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    correct = torch.as_tensor(np.asarray(batch.correct_ids, dtype=np.int64), device=device)
    incorrect = torch.as_tensor(np.asarray(batch.incorrect_ids, dtype=np.int64), device=device)
    return correct, incorrect


def logit_diff_directions(model: Any, batch: Any) -> Float[torch.Tensor, "prompt d_model"]:
    """``W_U[:, correct] - W_U[:, incorrect]`` per prompt: the residual direction of the metric."""
    W_U = model.W_U
    correct, incorrect = answer_ids(batch, W_U.device)
    return (W_U[:, correct] - W_U[:, incorrect]).T.float()


def unembed_bias_diff(model: Any, batch: Any) -> Float[torch.Tensor, "prompt"]:
    """``b_U[correct] - b_U[incorrect]``: the part of the logit difference no component writes."""
    b_U = getattr(model, "b_U", None)
    correct, incorrect = answer_ids(batch, model.W_U.device)
    if b_U is None:
        return torch.zeros(correct.shape[0], device=correct.device)
    return (b_U[correct] - b_U[incorrect]).float()


def logit_diff_at_end(logits: Float[torch.Tensor, "prompt pos d_vocab"], batch: Any) -> Float[torch.Tensor, "prompt"]:
    """The metric from full logits."""
    end_logits = at_end(logits, end_index(batch, logits.device))
    correct, incorrect = answer_ids(batch, logits.device)
    rows = torch.arange(end_logits.shape[0], device=logits.device)
    return end_logits[rows, correct] - end_logits[rows, incorrect]


def as_float32(tensor: torch.Tensor) -> np.ndarray:
    """A float32 C-contiguous numpy copy (how results leave ``core``)."""
    return np.ascontiguousarray(tensor.detach().float().cpu().numpy(), dtype=np.float32)


def as_int32(tensor: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(tensor.detach().cpu().numpy(), dtype=np.int32)


def token_text(tokenizer: Any, ids: np.ndarray) -> dict[str, str]:
    """``{str(id): decoded text}`` for every distinct non-negative id, for labelling top-k tokens."""
    distinct = sorted({int(i) for i in np.asarray(ids).ravel() if i >= 0})
    return {str(i): tokenizer.decode([i]) for i in distinct}


def prompt_labels(batch: Any) -> tuple[str, ...]:
    """One label per prompt: its text without the BOS token (when the set has one)."""
    skip = 1 if getattr(batch, "prepend_bos", True) else 0
    return tuple("".join(tokens[skip:]) for tokens in batch.str_tokens)


def rank_labels(k: int) -> tuple[str, ...]:
    return tuple(f"top {i + 1}" for i in range(k))
